// Hilum dicom/: the hospital network (DICOM upper layer, DCMTK's dcmnet), as plain functions.
//
// - run_storage_scp: a Storage SCP (C-ECHO; C-STORE of the projection radiography SOP classes and
//   Secondary Capture). It runs on the calling thread until `stop` becomes true; each association
//   gets its own thread. Only calling AE titles (and hosts) in the allow-list are accepted; others
//   are rejected at association. Bounded: at most `max_associations` at once (more are rejected
//   as "local limit exceeded"), the PDU size, ACSE/DIMSE timeouts (an association idle for the
//   DIMSE timeout is aborted) and a cap on one dataset's size (a larger one aborts the association).
//   The calling thread only accepts TCP connections; each one is negotiated (TLS handshake,
//   A-ASSOCIATE-RQ) and served on a thread of its own, with DCMTK objects of its own (no DCMTK
//   object is used by two threads), and closed when its negotiation is not over within the ACSE
//   timeout of its accept, however the peer trickles: a peer that connects and stalls holds
//   neither the listener nor the other peers.
//   Each instance is written to a new file in `incoming` whose name Hilum makes up (never from a
//   value the peer sent), synced (unless sync_received is false), then handed to `on_instance`, which must move or delete it and
//   says which DIMSE status the peer gets. A transfer that breaks off (peer killed, abort, timeout,
//   stop) leaves no file behind.
// - echo / find_studies / get_studies / send_files: the SCU side (C-ECHO, study-level C-FIND,
//   C-GET, C-STORE), each with cancel. Retrieval is by C-GET: the instances come back on the
//   association Hilum opened, so the PACS needs no route (AE title, host, port) to the workstation
//   and nothing has to listen on it (works through NAT and firewalls).
// - TLS (DCMTK's dcmtls over OpenSSL, the non-downgrading BCP 195 profile, as DCMTK's tools): optional on both sides (TlsOptions);
//   a listener with TLS speaks nothing else (a plain association fails its handshake).
// Every DCMTK condition becomes a dicom::Error (kind Network, Refused, Io, Cancelled, ...).
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "hilum/dicom/error.hpp"

namespace hilum::dicom::net {

// A remote application entity: "AET@HOST:PORT".
struct Peer {
  std::string ae_title;
  std::string host;
  int port = 104;
};
[[nodiscard]] Result<Peer> parse_peer(const std::string& text);
[[nodiscard]] std::string to_string(const Peer& peer);

// An allow-list entry: "AET" (any host) or "AET@HOST" (that address only: an IPv4/IPv6 address
// as the peer connects from, or "localhost" for the loopback addresses; names are not resolved).
struct AllowedPeer {
  std::string ae_title;
  std::string host;  // empty: any host
};
[[nodiscard]] Result<AllowedPeer> parse_allowed(const std::string& text);

// Whether an AE title is one DICOM allows (1-16 characters of the default repertoire, no
// backslash or control characters, not only spaces).
[[nodiscard]] bool valid_ae_title(const std::string& ae);

// TLS for one side. Off when no field is set. Files are PEM; the private key is not encrypted.
// - key + certificate: ours, shown to the peer. The SCP needs them; the SCU may go without (no
//   client certificate: a peer that requires one refuses the association).
// - ca: the peer's certificate must be signed by one of these CAs (the host name is not compared
//   with the certificate: DCMTK does not; pin the peer's certificate to accept one peer only).
// - peer_certificates: the peer must present one of these very certificates (pinned; its own
//   issuer need not be trusted).
// - The peer's certificate is verified (and required) whenever a CA or peer certificate is given;
//   with neither, verify_peer must be false (encrypted, but the peer is not authenticated;
//   the SCP then accepts clients without a certificate too).
struct TlsOptions {
  std::filesystem::path key;
  std::filesystem::path certificate;
  std::vector<std::filesystem::path> ca;
  std::vector<std::filesystem::path> peer_certificates;
  bool verify_peer = true;
  bool on = false;  // TLS even when no file is set (then refused: nothing to verify the peer with)
  [[nodiscard]] bool enabled() const {
    return on || !key.empty() || !certificate.empty() || !ca.empty() || !peer_certificates.empty() || !verify_peer;
  }
};

// Why `tls` cannot be used for a listener (`listener`) or a client, in words; nullopt when it can
// (or TLS is off). The rules above, checked before any file is read: the CLI, the GUI and the
// network functions all ask this one.
[[nodiscard]] std::optional<std::string> tls_problem(const TlsOptions& tls, bool listener);

struct Limits {
  int max_associations = 4;                          // concurrent (SCP)
  std::uint32_t max_pdu = 65536;                      // bytes, the PDU size we announce
  // Association set-up and release. SCP: from accepting a connection to its A-ASSOCIATE-RQ
  // (the TLS handshake included), in total; then it is closed. At most max_associations + 8
  // connections are in that phase at once (others wait in the backlog).
  int acse_timeout_seconds = 15;
  int dimse_timeout_seconds = 60;                     // a message or an idle association
  int connect_timeout_seconds = 10;                   // SCU: TCP connection
  std::uint64_t max_dataset_bytes = std::uint64_t{1} << 30;  // one instance (1 GiB)
  // C-GET: what one retrieve may bring in, all studies together (16 GiB). An instance past it is
  // refused (A700, out of resources), the C-GET cancelled, and the retrieve ends with a Refused
  // error that names the limit; what was received before it is kept.
  std::uint64_t max_retrieve_bytes = std::uint64_t{16} << 30;
};

// One instance received (C-STORE on our SCP, or a C-GET sub-operation).
struct ReceivedInstance {
  std::filesystem::path file;   // a complete Part 10 file in the incoming folder (synced, unless ScpOptions::sync_received is false)
  std::string sop_class_uid;
  std::string sop_instance_uid; // as the peer announced it (check it before using it)
  std::string calling_ae;       // the peer
  std::string peer_host;
  std::uint64_t bytes = 0;
  std::string study_instance_uid; // the dataset's, as received (check it before using it)
};

// The DIMSE status for the peer (0 = success) and a comment (sent as Error Comment, logged).
struct StoreVerdict {
  std::uint16_t status = 0;
  std::string comment;
};
inline constexpr std::uint16_t kStatusSuccess = 0x0000;
inline constexpr std::uint16_t kStatusSopClassNotSupported = 0x0122;  // refused: not an image class we keep
inline constexpr std::uint16_t kStatusOutOfResources = 0xA700;
inline constexpr std::uint16_t kStatusDataSetMismatch = 0xA900;       // dataset does not match the request
inline constexpr std::uint16_t kStatusCannotUnderstand = 0xC000;      // malformed, conflicting, ...

// Called on the association's thread (several may run at once): must move or delete the file.
using InstanceFn = std::function<StoreVerdict(const ReceivedInstance&)>;

enum class EventKind {
  Listening,            // the port is open (message: "AET on port N")
  AssociationAccepted,
  AssociationRejected,  // allow-list, called AE title, too many associations
  Echo,
  Stored,               // an instance was received and handed over (message: the verdict)
  Refused,              // a C-STORE answered with a failure status (message: why)
  Released,
  Aborted,              // broken off (peer gone, timeout, too large, stop): nothing kept
  Progress,             // bytes of the current dataset (SCU and SCP)
  Error,
};
[[nodiscard]] const char* to_string(EventKind kind);

struct Event {
  EventKind kind = EventKind::Error;
  std::string peer;     // "AET@host", when known
  std::string message;
  std::uint64_t bytes = 0;
};
// Called from any thread (the listener's or an association's); must be thread-safe.
using LogFn = std::function<void(const Event&)>;

struct ScpOptions {
  std::string ae_title = "HILUM";    // our AE title; associations calling another one are rejected
  int port = 11112;
  std::vector<AllowedPeer> allow;    // empty: nobody is accepted
  Limits limits;
  std::filesystem::path incoming;    // where received files are written first (must exist)
  TlsOptions tls;                    // enabled: TLS only (a handshake that fails is an Error event)
  // Whether each received file is fsynced before on_instance sees it. false: written and closed
  // only; on_instance then answers for its durability (e.g. syncing many files in one pass).
  bool sync_received = true;
};

// SOP classes the SCP takes: CR, DX for presentation and for processing, Digital X-Ray (the
// projection radiography classes Hilum reads) and Secondary Capture.
[[nodiscard]] const std::vector<std::string>& image_storage_sop_classes();
[[nodiscard]] bool is_image_storage_sop_class(const std::string& uid);

// Listens until *stop (polled about once a second) and returns once every association has ended.
// Error: the port cannot be opened (Network), options invalid (Invalid AE title: Refused).
[[nodiscard]] Result<core::Done> run_storage_scp(const ScpOptions& options, const InstanceFn& on_instance,
                                                 const LogFn& log, const std::atomic<bool>* stop);

// ---- SCU.

struct ScuOptions {
  Peer peer;
  std::string our_ae = "HILUM";
  Limits limits;
  TlsOptions tls;
  // C-GET: whether each received file is fsynced before on_instance sees it (false: on_instance
  // answers for its durability, as ScpOptions::sync_received).
  bool sync_received = true;
};

[[nodiscard]] Result<core::Done> echo(const ScuOptions& options);

// Study-level C-FIND (Study Root). Empty fields are not matched. Dates are YYYYMMDD.
struct StudyQuery {
  std::string patient_id;
  std::string patient_name;    // DICOM wildcards (* ?) allowed
  std::string accession_number;
  std::string date_from;
  std::string date_to;
  std::string modality;        // Modalities in Study
};

struct StudyMatch {
  std::string study_instance_uid;
  std::string patient_id;
  std::string patient_name;
  std::string study_date;
  std::string study_time;
  std::string accession_number;
  std::string study_description;
  std::string modalities;      // "CR\DX"
  int series = -1;             // -1: the PACS did not say
  int instances = -1;
};

// Errors: Network, Refused (the PACS answered with a failure status), Cancelled.
[[nodiscard]] Result<std::vector<StudyMatch>> find_studies(const ScuOptions& options, const StudyQuery& query,
                                                           const std::atomic<bool>* cancel = nullptr);

struct RetrieveProgress {
  std::string study_instance_uid;
  int completed = 0;    // sub-operations, as the PACS counts them
  int remaining = -1;
  int failed = 0;
  int warning = 0;
  std::uint64_t received = 0;  // instances received in this call
};
using RetrieveProgressFn = std::function<void(const RetrieveProgress&)>;

struct RetrieveReport {
  std::uint64_t received = 0;  // instances handed to on_instance
  std::uint64_t refused = 0;   // instances on_instance refused, or the PACS could not send
};

// C-GET of whole studies, on an association of Hilum's own (not DCMTK's DcmSCU): each instance
// is streamed as it arrives to a new file in `incoming`, named by Hilum, then goes through
// `on_instance` as on the SCP, whose verdict the PACS gets (0122 for classes Hilum does not
// keep). Cancel sends C-CANCEL and stops. Bounded, in memory and on disk: an instance larger than
// limits.max_dataset_bytes is read to its end, dropped and refused (A700), the C-GET going on;
// one that would take the retrieve past limits.max_retrieve_bytes is refused and stops it
// (Refused, the limit named). Nothing of a refused or broken-off instance is left in `incoming`.
[[nodiscard]] Result<RetrieveReport> get_studies(const ScuOptions& options, const std::vector<std::string>& study_uids,
                                                 const std::filesystem::path& incoming, const InstanceFn& on_instance,
                                                 const RetrieveProgressFn& progress = {},
                                                 const std::atomic<bool>* cancel = nullptr);

struct SendFailure {
  std::filesystem::path file;
  std::string reason;
};
struct SendReport {
  std::uint64_t sent = 0;
  std::vector<SendFailure> failed;
};
using SendProgressFn = std::function<void(std::size_t done, std::size_t total, const std::filesystem::path& file)>;

// C-STORE of Part 10 files, in their own transfer syntax (one association).
[[nodiscard]] Result<SendReport> send_files(const ScuOptions& options, const std::vector<std::filesystem::path>& files,
                                            const SendProgressFn& progress = {},
                                            const std::atomic<bool>* cancel = nullptr);

}  // namespace hilum::dicom::net
