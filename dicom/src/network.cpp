#include "hilum/dicom/network.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <system_error>
#include <random>
#include <thread>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcistrmb.h>
#include <dcmtk/dcmdata/dcostrmf.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmnet/assoc.h>
#include <dcmtk/dcmnet/dimse.h>
#include <dcmtk/dcmnet/dul.h>
#include <dcmtk/dcmnet/diutil.h>
#include <dcmtk/dcmnet/scu.h>
#include <dcmtk/dcmtls/tlslayer.h>
#include <openssl/x509_vfy.h>

#include "hilum/dicom/reader.hpp"
#include "internal.hpp"

namespace fs = std::filesystem;

namespace hilum::dicom::net {
namespace {

using detail::trim;

Error net_error(ErrorKind kind, std::string message) { return Error{kind, std::move(message)}; }

// An OFCondition as a sentence (DCMTK's text, without its module prefix noise).
std::string condition_text(const OFCondition& c) {
  std::string text = c.text();
  return text.empty() ? std::string("unknown network error") : text;
}

const char* const kTransferSyntaxes[] = {
    UID_LittleEndianExplicitTransferSyntax,   UID_LittleEndianImplicitTransferSyntax,
    UID_BigEndianExplicitTransferSyntax,      UID_DeflatedExplicitVRLittleEndianTransferSyntax,
    UID_JPEGProcess14SV1TransferSyntax,       UID_JPEGProcess14TransferSyntax,
    UID_JPEGProcess1TransferSyntax,           UID_JPEGProcess2_4TransferSyntax,
    UID_JPEGLSLosslessTransferSyntax,         UID_JPEGLSLossyTransferSyntax,
    UID_JPEG2000LosslessOnlyTransferSyntax,   UID_JPEG2000TransferSyntax,
    UID_RLELosslessTransferSyntax,
};
constexpr int kTransferSyntaxCount = static_cast<int>(sizeof(kTransferSyntaxes) / sizeof(kTransferSyntaxes[0]));

OFList<OFString> transfer_syntax_list(bool uncompressed_only = false) {
  OFList<OFString> list;
  for (const char* ts : kTransferSyntaxes) {
    list.push_back(ts);
    if (uncompressed_only && list.size() == 2) break;
  }
  return list;
}

// A name for a received file that no peer value goes into: pid, a counter and randomness.
fs::path incoming_name(const fs::path& folder) {
  static std::atomic<std::uint64_t> counter{0};
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  const std::uint64_t n = counter.fetch_add(1);
  return folder / (".hilum-rx-" + std::to_string(::getpid()) + "-" + std::to_string(n) + "-" + std::to_string(rng() & 0xffffffffu) + ".dcm");
}

std::string errno_text() { return std::strerror(errno); }

bool write_all(int fd, const void* data, std::size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t w = ::write(fd, p, size);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += w;
    size -= static_cast<std::size_t>(w);
  }
  return true;
}

// After the callback: whatever it left in the incoming folder goes.
void remove_leftover(const fs::path& file) {
  std::error_code ec;
  fs::remove(file, ec);
}

// Checks the received file's own SOP Class and Instance UIDs against the request's (A900 when
// they differ), and that it parses (C000 when it does not); `study` gets its Study Instance UID.
// Values above 4 KiB stay on disk.
StoreVerdict check_received(const fs::path& file, const std::string& sop_class, const std::string& sop_instance, std::string& study) {
  DcmFileFormat ff;
  const OFCondition c = ff.loadFile(OFFilename(file.c_str()), EXS_Unknown, EGL_noChange, 4096);
  if (c.bad()) return {kStatusCannotUnderstand, "malformed dataset: " + condition_text(c)};
  OFString cls;
  OFString inst;
  ff.getDataset()->findAndGetOFString(DCM_SOPClassUID, cls);
  ff.getDataset()->findAndGetOFString(DCM_SOPInstanceUID, inst);
  OFString study_uid;
  ff.getDataset()->findAndGetOFString(DCM_StudyInstanceUID, study_uid);
  study = trim(study_uid.c_str());
  if (trim(cls.c_str()) != sop_class || trim(inst.c_str()) != sop_instance) {
    return {kStatusDataSetMismatch, "the dataset's SOP Class/Instance UID differ from the C-STORE request's"};
  }
  return {};
}

// The next PDV of the association, reading the network when the buffer is empty.
OFCondition next_pdv(T_ASC_Association* assoc, int timeout, DUL_PDV* pdv) {
  OFCondition c = DUL_NextPDV(&assoc->DULassociation, pdv);
  if (c.good() || c != DUL_NOPDVS) return c;
  c = DUL_ReadPDVs(&assoc->DULassociation, nullptr, DUL_NOBLOCK, timeout);
  if (c.bad() && c != DUL_PDATAPDUARRIVED) return c;  // "arrived" is how DUL says it has data
  return DUL_NextPDV(&assoc->DULassociation, pdv);
}

std::string cut(const std::string& s, std::size_t n) { return s.size() <= n ? s : s.substr(0, n); }

// Leading and trailing spaces off (an AE title's padding), nothing else.
std::string trim_spaces(const std::string& s) {
  const auto first = s.find_first_not_of(' ');
  if (first == std::string::npos) return {};
  return s.substr(first, s.find_last_not_of(' ') - first + 1);
}

// ---- DCMTK's process-wide state.
//
// DUL_InitializeNetwork does its one-time set-up (the state machine's table, SIGPIPE ignored) on
// its first call, unguarded: every entry point of this file makes that first call here, once,
// before any of our threads can call into dcmnet.
void start_dcmnet() {
  register_codecs();  // keeps DCMTK's log quiet: every problem comes back as an Error
  static std::once_flag once;
  std::call_once(once, [] {
    T_ASC_Network* network = nullptr;
    if (ASC_initializeNetwork(NET_REQUESTOR, 0, 1, &network).good()) ASC_dropNetwork(&network);
  });
}

// ---- The negotiation of an association (TLS handshake, A-ASSOCIATE-RQ), bounded, one thread each.
//
// The listener's thread only accepts TCP connections (a socket of ours; no DCMTK object). Each
// connection is then negotiated on a thread of its own with DCMTK objects of its own: its own
// T_ASC_Network (made without a listening socket), association and transport connection. No DCMTK
// object is used by two threads; what they share is DCMTK's process globals, read through
// OFGlobal (mutex-protected), the state machine's table (written once, by start_dcmnet), and
// the listener's transport layer, of which only createConnection is called, under the mutex below
// (the TLS connections it makes share the layer's SSL_CTX, which OpenSSL allows once it is set up).
//
// DCMTK takes an accepted socket only through the global dcmExternalSocketHandle ("inherently
// thread unsafe", dcmnet/dul.h; storescp --inetd and DCMTK's Windows --fork child use it): read by
// ASC_initializeNetwork (no listening socket when set) and by ASC_receiveAssociation (the socket
// instead of accept()), which then hands it to the transport layer's factory before reading
// anything. So one negotiation at a time holds `handover` from setting the global until the
// factory has the socket: the factory clears the global and lets go, and the handshake and the
// request are read outside it. Nothing in between reads from the network, so a stalled peer
// never holds it.
//
// A peer that connects and stalls (no request, no ClientHello, or a byte now and then) would keep
// DCMTK reading for its socket timeout, once per read; so the listener's thread shuts down any
// connection whose negotiation is not over within the ACSE timeout of its accept (a total), and
// its thread's read fails.

std::mutex& handover_mutex() {
  static std::mutex mutex;
  return mutex;
}
thread_local std::unique_lock<std::mutex>* tl_handover = nullptr;  // this thread's hold, if any

// DCMTK has taken the socket (or failed before): the global is cleared and the next may go.
void end_handover() {
  if (tl_handover != nullptr && tl_handover->owns_lock()) {
    dcmExternalSocketHandle.set(DCMNET_INVALID_SOCKET);
    tl_handover->unlock();
  }
}

// The listener's transport layers: DCMTK's, ending the handover once the socket is taken.
class HandoverLayer : public DcmTransportLayer {
 public:
  DcmTransportConnection* createConnection(DcmNativeSocketType socket, OFBool secure) override {
    DcmTransportConnection* connection = DcmTransportLayer::createConnection(socket, secure);
    end_handover();
    return connection;
  }
};
class HandoverTlsLayer : public DcmTLSTransportLayer {
 public:
  using DcmTLSTransportLayer::DcmTLSTransportLayer;
  DcmTransportConnection* createConnection(DcmNativeSocketType socket, OFBool secure) override {
    DcmTransportConnection* connection = DcmTLSTransportLayer::createConnection(socket, secure);
    end_handover();
    return connection;
  }
};

// A connection's network and association, on its negotiating thread (then its serving thread,
// the same one), dropped and freed on the way out.
struct Negotiated {
  T_ASC_Network* network = nullptr;
  T_ASC_Association* assoc = nullptr;
  Negotiated() = default;
  Negotiated(const Negotiated&) = delete;
  Negotiated& operator=(const Negotiated&) = delete;
  ~Negotiated() {
    if (assoc != nullptr) {
      ASC_dropAssociation(assoc);
      ASC_destroyAssociation(&assoc);
    }
    if (network != nullptr) ASC_dropNetwork(&network);
  }
};

// Receives the association request on `socket` (accepted by the listener; DCMTK owns it once it
// has taken it, else it is closed here) with a network of this thread's own.
OFCondition receive_association(int socket, DcmTransportLayer& layer, bool secure, int port, const Limits& limits, Negotiated& n) {
  OFCondition c = EC_Normal;
  bool taken = false;
  {
    std::unique_lock hold(handover_mutex());
    tl_handover = &hold;
    dcmExternalSocketHandle.set(socket);
    c = ASC_initializeNetwork(NET_ACCEPTOR, port, limits.acse_timeout_seconds, &n.network);
    if (c.good()) c = ASC_setTransportLayer(n.network, &layer, 0);  // the listener's: outlives the network
    if (c.good()) {
      c = ASC_receiveAssociation(n.network, &n.assoc, static_cast<long>(limits.max_pdu), nullptr, nullptr, secure ? OFTrue : OFFalse,
                                 DUL_NOBLOCK, limits.acse_timeout_seconds);
    }
    taken = !hold.owns_lock();
    end_handover();  // DCMTK failed before taking it
    tl_handover = nullptr;
  }
  if (!taken) ::close(socket);
  return c;
}

// The connections in negotiation, with their deadlines (the listener's thread enforces them).
struct Negotiation {
  int fd = -1;                  // our duplicate of the accepted socket (shut down at the deadline)
  std::string host;             // the peer's address
  std::chrono::steady_clock::time_point deadline;
  bool timed_out = false;       // shut down at its deadline
};

std::string peer_address(int socket) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (::getpeername(socket, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return {};
  char text[INET6_ADDRSTRLEN] = {};
  const void* where = addr.ss_family == AF_INET6 ? static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(&addr)->sin6_addr)
                                                 : static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(&addr)->sin_addr);
  return ::inet_ntop(addr.ss_family, where, text, sizeof text) != nullptr ? std::string(text) : std::string();
}

class Negotiations {
 public:
  explicit Negotiations(int timeout_seconds) : timeout_(timeout_seconds) {}

  // A connection just accepted: its deadline starts now.
  std::shared_ptr<Negotiation> start(int socket) {
    auto n = std::make_shared<Negotiation>();
    n->fd = ::fcntl(socket, F_DUPFD_CLOEXEC, 0);
    n->host = peer_address(socket);
    n->deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_);
    const std::lock_guard lock(mutex_);
    open_.push_back(n);
    return n;
  }
  // The negotiation is over (accepted, rejected or failed): no deadline any more.
  void finish(const std::shared_ptr<Negotiation>& n) {
    const std::lock_guard lock(mutex_);
    if (n->fd >= 0) ::close(n->fd);
    n->fd = -1;
    open_.remove(n);
    changed_.notify_all();
  }
  bool timed_out(const Negotiation& n) {
    const std::lock_guard lock(mutex_);
    return n.timed_out;
  }
  std::size_t count() {
    const std::lock_guard lock(mutex_);
    return open_.size();
  }
  // Shuts down every connection past its deadline (all of them: `all`); its read then fails.
  void enforce(bool all) {
    const auto now = std::chrono::steady_clock::now();
    const std::lock_guard lock(mutex_);
    for (const auto& n : open_) {
      if (n->fd >= 0 && !n->timed_out && (all || now >= n->deadline)) {
        ::shutdown(n->fd, SHUT_RDWR);
        n->timed_out = true;
      }
    }
  }
  // Waits until fewer than `limit` negotiations are open, at most `ms`.
  void wait_below(std::size_t limit, int ms) {
    std::unique_lock lock(mutex_);
    changed_.wait_for(lock, std::chrono::milliseconds(ms), [&] { return open_.size() < limit; });
  }

 private:
  int timeout_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::list<std::shared_ptr<Negotiation>> open_;
};

// The listening socket (IPv4, any address, as DCMTK's own), or why not.
int open_listening_socket(int port, std::string& why) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    why = errno_text();
    return -1;
  }
  const int reuse = 1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &reuse, sizeof reuse) != 0 ||
      ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 64) != 0) {
    why = errno_text();
    ::close(fd);
    return -1;
  }
  return fd;
}

// ---- Nagle's algorithm off on our sockets.
//
// DCMTK writes a PDU's 6-byte header and its body in two writes, and leaves Nagle's algorithm on
// (unless TCP_NODELAY is set in the environment): the body then waits until the peer has
// acknowledged the header, which a peer waiting for the whole PDU (every DIMSE response, every
// request followed by its dataset) does only when its delayed-ACK timer fires, 40 ms on Linux.
// That is a 40 ms stall per C-STORE response: `storescp` (its defaults) and the listener both
// took ~45 ms per 1 MB instance on loopback, 9 ms with Nagle off (bench/README.md).
void no_delay(DcmNativeSocketType socket) {
  const int on = 1;
  (void)::setsockopt(socket, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);  // an optimisation: a failure changes nothing else
}

// Our SCU's plain transport layer (C-GET's association, echo, find, send): a plain TCP connection,
// Nagle off, whatever it is asked: DcmSCU takes a transport layer only as a secure one
// (useSecureConnection marks the association "secure", and DCMTK then asks the layer for a
// secure connection, which DCMTK's plain layer refuses).
class NoDelayLayer : public DcmTransportLayer {
 public:
  DcmTransportConnection* createConnection(DcmNativeSocketType socket, OFBool /*secure*/) override {
    no_delay(socket);
    return DcmTransportLayer::createConnection(socket, OFFalse);
  }
};
class NoDelayTlsLayer : public DcmTLSTransportLayer {
 public:
  using DcmTLSTransportLayer::DcmTLSTransportLayer;
  DcmTransportConnection* createConnection(DcmNativeSocketType socket, OFBool secure) override {
    no_delay(socket);
    return DcmTLSTransportLayer::createConnection(socket, secure);
  }
};

// ---- TLS.

// The TLS layer for one side (NET_ACCEPTOR: our SCP, whose layer ends the handover; NET_REQUESTOR: our
// SCU), or why not.
Result<std::unique_ptr<DcmTLSTransportLayer>> tls_layer(const TlsOptions& tls, T_ASC_NetworkRole role) {
  if (auto problem = tls_problem(tls, role == NET_ACCEPTOR)) return net_error(ErrorKind::Refused, *problem);
  static std::once_flag openssl_once;
  std::call_once(openssl_once, [] { DcmTLSTransportLayer::initializeOpenSSL(); });
  std::unique_ptr<DcmTLSTransportLayer> layer;
  if (role == NET_ACCEPTOR) layer = std::make_unique<HandoverTlsLayer>(role, nullptr, OFFalse);
  else layer = std::make_unique<NoDelayTlsLayer>(role, nullptr, OFFalse);
  if (!*layer) return net_error(ErrorKind::Network, "cannot set up TLS (OpenSSL)");
  auto failed = [](const std::string& what, const OFCondition& c) { return net_error(ErrorKind::Refused, "TLS: " + what + ": " + condition_text(c)); };
  OFCondition c = layer->setTLSProfile(TSP_Profile_BCP195_ND);
  if (c.bad()) return failed("the BCP 195 (non-downgrading) profile", c);
  c = layer->activateCipherSuites();
  if (c.bad()) return failed("the cipher suites", c);
  if (!tls.key.empty()) {
    c = layer->setPrivateKeyFile(tls.key.c_str(), DCF_Filetype_PEM);
    if (c.bad()) return failed("cannot load the private key " + tls.key.string(), c);
    c = layer->setCertificateFile(tls.certificate.c_str(), DCF_Filetype_PEM);
    if (c.bad()) return failed("cannot load the certificate " + tls.certificate.string(), c);
    if (!layer->checkPrivateKeyMatchesCertificate()) {
      return net_error(ErrorKind::Refused, "TLS: the private key " + tls.key.string() + " does not match the certificate " + tls.certificate.string());
    }
  }
  for (const auto& f : tls.ca) {
    c = layer->addTrustedCertificateFile(f.c_str(), DCF_Filetype_PEM);
    if (c.bad()) return failed("cannot load the CA certificate " + f.string(), c);
  }
  for (const auto& f : tls.peer_certificates) {
    c = layer->addTrustedCertificateFile(f.c_str(), DCF_Filetype_PEM);
    if (c.bad()) return failed("cannot load the peer certificate " + f.string(), c);
  }
  if (!tls.peer_certificates.empty()) {
    // A pinned certificate ends the chain even when it is not self-signed.
    c = layer->addVerificationFlags(X509_V_FLAG_PARTIAL_CHAIN);
    if (c.bad()) return failed("cannot pin the peer certificates", c);
  }
  layer->setCertificateVerification(tls.verify_peer ? DCV_requireCertificate : DCV_ignoreCertificate);
  return layer;
}

}  // namespace

std::optional<std::string> tls_problem(const TlsOptions& tls, bool listener) {
  if (!tls.enabled()) return std::nullopt;
  const bool anchors = !tls.ca.empty() || !tls.peer_certificates.empty();
  if (tls.key.empty() != tls.certificate.empty()) return "TLS needs both a private key and its certificate";
  if (listener && tls.key.empty()) return "a TLS listener needs a private key and a certificate";
  if (tls.verify_peer && !anchors) {
    return "TLS: no CA or peer certificate to verify the peer with (or verification turned off)";
  }
  if (!tls.verify_peer && anchors) return "TLS: verification turned off, yet a CA or peer certificate given (which would not be used)";
  return std::nullopt;
}

namespace {

// ---- One C-STORE request's dataset, on our SCP or in a C-GET: streamed to a file.

struct StoreRules {
  const fs::path& incoming;        // where the file is written, under a name of ours
  std::uint64_t max_bytes;         // this dataset
  // Past max_bytes: empty, the association is aborted (the SCP); otherwise the rest is read and
  // dropped and the peer gets this verdict, given the dataset's whole size (C-GET).
  std::function<StoreVerdict(std::uint64_t bytes)> too_large;
  int timeout_seconds;
  bool sync;
  std::string calling_ae;
  std::string peer_host;
};

struct StoreOutcome {
  bool answered = false;           // false: the association was aborted (why: `aborted`)
  bool response_failed = false;    // the verdict was reached but could not be sent
  std::string aborted;
  StoreVerdict verdict;
  std::uint64_t bytes = 0;         // the dataset's bytes read
};

// Receives the dataset of `rq` PDV by PDV into a new file in rules.incoming, named by us (never
// from a value the peer sent): nothing of it is held in memory. A kept SOP class that arrives
// whole, within its limit, is synced (rules.sync), checked and handed to on_instance, whose
// verdict the peer gets; other classes get 0122. Whatever on_instance did not take is removed,
// as is everything of a transfer that breaks off. `keep_going` sees the bytes so far after each
// PDV; false aborts the association (stop, cancel).
StoreOutcome receive_store(T_ASC_Association* assoc, T_ASC_PresentationContextID pid, T_DIMSE_C_StoreRQ& rq, const StoreRules& rules,
                           const InstanceFn& on_instance, const std::function<bool(std::uint64_t)>& keep_going) {
  const std::string sop_class = trim(rq.AffectedSOPClassUID);
  const std::string sop_instance = trim(rq.AffectedSOPInstanceUID);
  const bool keep = is_image_storage_sop_class(sop_class);
  StoreOutcome out;

  fs::path file;
  int fd = -1;
  std::string write_error;
  if (keep) {
    file = incoming_name(rules.incoming);
    DcmOutputFileStream* stream = nullptr;
    OFCondition c = DIMSE_createFilestream(OFFilename(file.c_str()), &rq, assoc, pid, OFTrue, &stream);
    delete stream;  // the meta header is written; the dataset is appended below as it arrives
    if (c.good()) fd = ::open(file.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    if (c.bad() || fd < 0) write_error = "cannot write in " + rules.incoming.string() + ": " + (c.bad() ? condition_text(c) : errno_text());
  }
  auto discard = [&]() {
    if (fd >= 0) ::close(fd);
    fd = -1;
    if (!file.empty()) remove_leftover(file);
  };
  auto abort = [&](std::string why) {
    discard();
    out.aborted = std::move(why);
    ASC_abortAssociation(assoc);
    return out;
  };

  bool too_large = false;
  for (;;) {
    DUL_PDV pdv{};
    const OFCondition c = next_pdv(assoc, rules.timeout_seconds, &pdv);
    if (c.bad()) {
      std::string why = c == DUL_READTIMEOUT ? "no data for " + std::to_string(rules.timeout_seconds) + " s"
                        : c == DUL_PEERABORTEDASSOCIATION ? std::string("the peer aborted or went away")
                                                          : condition_text(c);
      return abort("transfer of " + cut(sop_instance, 64) + " broken off after " + std::to_string(out.bytes) + " bytes (" + why + "); nothing kept");
    }
    if (pdv.pdvType != DUL_DATASETPDV || pdv.presentationContextID != pid) {
      return abort("unexpected PDV while receiving a dataset; association aborted, nothing kept");
    }
    out.bytes += pdv.fragmentLength;
    if (out.bytes > rules.max_bytes && !too_large) {
      if (!rules.too_large) {
        return abort("dataset " + cut(sop_instance, 64) + " larger than the limit of " + std::to_string(rules.max_bytes) +
                     " bytes; association aborted, nothing kept");
      }
      too_large = true;  // read on, keep nothing
      discard();
    }
    if (keep_going && !keep_going(out.bytes)) return abort("stopped during a transfer; nothing kept");
    if (fd >= 0 && pdv.fragmentLength > 0 && !write_all(fd, pdv.data, pdv.fragmentLength)) {
      write_error = "cannot write " + file.string() + ": " + errno_text();
      discard();
    }
    if (pdv.lastPDV) break;
  }

  StoreVerdict& verdict = out.verdict;
  if (!keep) {
    verdict = {kStatusSopClassNotSupported, "not a SOP class Hilum keeps: " + detail::sop_class_display_name(sop_class)};
  } else if (too_large) {
    verdict = rules.too_large(out.bytes);
  } else if (!write_error.empty()) {
    verdict = {kStatusOutOfResources, write_error};
  } else {
    bool synced = true;
    while (rules.sync && ::fsync(fd) != 0) {
      if (errno == EINTR) continue;
      synced = false;
      break;
    }
    const bool closed = ::close(fd) == 0;
    fd = -1;
    if (!synced || !closed) {
      verdict = {kStatusOutOfResources, "cannot write " + file.string() + ": " + errno_text()};
    } else {
      std::string study;
      verdict = check_received(file, sop_class, sop_instance, study);
      if (verdict.status == kStatusSuccess && on_instance) {
        ReceivedInstance inst{file, sop_class, sop_instance, rules.calling_ae, rules.peer_host, out.bytes, study};
        try {
          verdict = on_instance(inst);
        } catch (const std::exception& e) {
          verdict = {kStatusOutOfResources, std::string("cannot file the instance: ") + e.what()};
        }
      }
    }
  }
  discard();  // a file the callback did not take is removed

  T_DIMSE_C_StoreRSP rsp{};
  rsp.MessageIDBeingRespondedTo = rq.MessageID;
  rsp.DimseStatus = verdict.status;
  rsp.DataSetType = DIMSE_DATASET_NULL;
  OFStandard::strlcpy(rsp.AffectedSOPClassUID, rq.AffectedSOPClassUID, sizeof(rsp.AffectedSOPClassUID));
  OFStandard::strlcpy(rsp.AffectedSOPInstanceUID, rq.AffectedSOPInstanceUID, sizeof(rsp.AffectedSOPInstanceUID));
  rsp.opts = O_STORE_AFFECTEDSOPCLASSUID | O_STORE_AFFECTEDSOPINSTANCEUID;
  DcmDataset detail;
  DcmDataset* detail_ptr = nullptr;
  if (verdict.status != kStatusSuccess && !verdict.comment.empty()) {
    detail.putAndInsertString(DCM_ErrorComment, cut(verdict.comment, 64).c_str());
    detail_ptr = &detail;
  }
  const OFCondition c = DIMSE_sendStoreResponse(assoc, pid, &rq, &rsp, detail_ptr);
  if (c.bad()) {
    out.response_failed = true;
    return abort("cannot send the C-STORE response: " + condition_text(c));
  }
  out.answered = true;
  return out;
}

// ---- A command from a peer, on our SCP and on our C-GET associations. Read here rather than by
// DIMSE_receiveCommand, which keeps every command fragment a peer sends, without a bound, and
// allocates each element's declared length (up to 4 GiB) before its bytes arrive (found by
// fuzzing). A command set is a few hundred bytes: at most kMaxCommandBytes, each element's length
// checked against what arrived before DCMTK parses it.

constexpr std::size_t kMaxCommandBytes = 16 * 1024;
// A C-GET response's identifier (the Failed SOP Instance UID List of a large study: 65 bytes an
// instance) is read and dropped as it arrives, up to this size. DCMTK-based PACSs (Orthanc) put
// that list into the response's command set instead: a C-GET response may be that much larger.
constexpr std::size_t kMaxIdentifierBytes = 4 << 20;
constexpr std::size_t kMaxGetResponseBytes = kMaxCommandBytes + kMaxIdentifierBytes;

struct CommandRules {
  std::size_t max_bytes = kMaxCommandBytes;
  bool other_groups = false;  // elements outside group 0000 allowed (and ignored)
};

struct Command {
  OFCondition condition = EC_Normal;  // bad: what the upper layer said (release, abort, timeout, ...)
  std::string refused;                // not empty: a command we cannot take (why); the association is aborted
  T_ASC_PresentationContextID pid = 0;
  std::uint16_t field = 0;            // Command Field; msg holds C-ECHO-RQ, C-STORE-RQ and C-GET-RSP only
  T_DIMSE_Message msg{};
};

std::uint32_t le32(const std::string& b, std::size_t at) {
  return static_cast<std::uint32_t>(static_cast<unsigned char>(b[at])) | static_cast<std::uint32_t>(static_cast<unsigned char>(b[at + 1])) << 8 |
         static_cast<std::uint32_t>(static_cast<unsigned char>(b[at + 2])) << 16 | static_cast<std::uint32_t>(static_cast<unsigned char>(b[at + 3])) << 24;
}

Command read_command(T_ASC_Association* assoc, int timeout, const CommandRules& rules) {
  Command out;
  std::string bytes;
  bool first = true;
  for (;;) {
    DUL_PDV pdv{};
    out.condition = next_pdv(assoc, timeout, &pdv);
    if (out.condition.bad()) return out;
    if (pdv.pdvType != DUL_COMMANDPDV) {
      out.refused = "a data set where a command was expected";
      return out;
    }
    if (first) out.pid = pdv.presentationContextID;
    first = false;
    if (pdv.presentationContextID != out.pid) {
      out.refused = "a command's fragments on two presentation contexts";
      return out;
    }
    if (pdv.fragmentLength > rules.max_bytes - bytes.size()) {
      out.refused = "a command larger than " + std::to_string(rules.max_bytes) + " bytes";
      return out;
    }
    if (pdv.fragmentLength > 0) bytes.append(static_cast<const char*>(pdv.data), pdv.fragmentLength);
    if (pdv.lastPDV) break;
  }
  T_ASC_PresentationContext pc;
  if (ASC_findAcceptedPresentationContext(assoc->params, out.pid, &pc).bad()) {
    out.refused = "a command on presentation context " + std::to_string(out.pid) + ", which was not accepted";
    return out;
  }
  // Implicit VR little endian, as every command set: tag (4 bytes), length (4), value.
  for (std::size_t at = 0; at < bytes.size();) {
    if (bytes.size() - at < 8) {
      out.refused = "a truncated command element";
      return out;
    }
    const std::uint32_t length = le32(bytes, at + 4);
    if (!rules.other_groups && (bytes[at] != 0 || bytes[at + 1] != 0)) {
      out.refused = "a command element outside group 0000";
      return out;
    }
    if (length > bytes.size() - at - 8) {
      out.refused = "a command element longer than the command";
      return out;
    }
    at += 8 + length;
  }
  DcmInputBufferStream stream;
  stream.setBuffer(bytes.data(), static_cast<offile_off_t>(bytes.size()));
  stream.setEos();
  DcmDataset set;
  set.transferInit();
  const OFCondition parsed = set.read(stream, EXS_LittleEndianImplicit);
  set.transferEnd();
  Uint16 field = 0;
  Uint16 id = 0;
  Uint16 data_set_type = DIMSE_DATASET_NULL;
  if (parsed.bad() || set.findAndGetUint16(DCM_CommandField, field).bad() || set.findAndGetUint16(DCM_CommandDataSetType, data_set_type).bad()) {
    out.refused = "a command that does not parse (or lacks Command Field or Data Set Type)";
    return out;
  }
  // A request carries its Message ID, a response the ID of the request it answers.
  const bool response = (field & 0x8000) != 0;
  if (set.findAndGetUint16(response ? DCM_MessageIDBeingRespondedTo : DCM_MessageID, id).bad()) {
    out.refused = response ? "a response without Message ID Being Responded To" : "a request without Message ID";
    return out;
  }
  out.field = field;
  OFString sop_class;
  set.findAndGetOFString(DCM_AffectedSOPClassUID, sop_class);
  if (field == DIMSE_C_ECHO_RQ) {
    out.msg.CommandField = DIMSE_C_ECHO_RQ;
    T_DIMSE_C_EchoRQ& rq = out.msg.msg.CEchoRQ;
    rq.MessageID = id;
    OFStandard::strlcpy(rq.AffectedSOPClassUID, sop_class.c_str(), sizeof(rq.AffectedSOPClassUID));
    rq.DataSetType = data_set_type == DIMSE_DATASET_NULL ? DIMSE_DATASET_NULL : DIMSE_DATASET_PRESENT;
  } else if (field == DIMSE_C_STORE_RQ) {
    OFString sop_instance;
    set.findAndGetOFString(DCM_AffectedSOPInstanceUID, sop_instance);
    if (sop_class.empty() || sop_instance.empty() || data_set_type == DIMSE_DATASET_NULL) {
      out.refused = "a C-STORE request without SOP Class UID, SOP Instance UID or data set";
      return out;
    }
    out.msg.CommandField = DIMSE_C_STORE_RQ;
    T_DIMSE_C_StoreRQ& rq = out.msg.msg.CStoreRQ;
    rq.MessageID = id;
    OFStandard::strlcpy(rq.AffectedSOPClassUID, sop_class.c_str(), sizeof(rq.AffectedSOPClassUID));
    OFStandard::strlcpy(rq.AffectedSOPInstanceUID, sop_instance.c_str(), sizeof(rq.AffectedSOPInstanceUID));
    Uint16 priority = DIMSE_PRIORITY_MEDIUM;
    set.findAndGetUint16(DCM_Priority, priority);
    rq.Priority = priority == DIMSE_PRIORITY_LOW ? DIMSE_PRIORITY_LOW : priority == DIMSE_PRIORITY_HIGH ? DIMSE_PRIORITY_HIGH : DIMSE_PRIORITY_MEDIUM;
    rq.DataSetType = DIMSE_DATASET_PRESENT;
    OFString originator;
    if (set.findAndGetOFString(DCM_MoveOriginatorApplicationEntityTitle, originator).good()) {
      OFStandard::strlcpy(rq.MoveOriginatorApplicationEntityTitle, originator.c_str(), sizeof(rq.MoveOriginatorApplicationEntityTitle));
      rq.opts |= O_STORE_MOVEORIGINATORAETITLE;
    }
    Uint16 originator_id = 0;
    if (set.findAndGetUint16(DCM_MoveOriginatorMessageID, originator_id).good()) {
      rq.MoveOriginatorID = originator_id;
      rq.opts |= O_STORE_MOVEORIGINATORID;
    }
  } else if (field == DIMSE_C_GET_RSP) {
    Uint16 status = 0;
    if (set.findAndGetUint16(DCM_Status, status).bad()) {
      out.refused = "a C-GET response without Status";
      return out;
    }
    out.msg.CommandField = DIMSE_C_GET_RSP;
    T_DIMSE_C_GetRSP& rsp = out.msg.msg.CGetRSP;
    rsp.MessageIDBeingRespondedTo = id;
    rsp.DimseStatus = status;
    rsp.DataSetType = data_set_type == DIMSE_DATASET_NULL ? DIMSE_DATASET_NULL : DIMSE_DATASET_PRESENT;
    const auto count = [&](const DcmTagKey& tag, Uint16& value, unsigned flag) {
      if (set.findAndGetUint16(tag, value).good()) rsp.opts |= flag;
    };
    count(DCM_NumberOfRemainingSuboperations, rsp.NumberOfRemainingSubOperations, O_GET_NUMBEROFREMAININGSUBOPERATIONS);
    count(DCM_NumberOfCompletedSuboperations, rsp.NumberOfCompletedSubOperations, O_GET_NUMBEROFCOMPLETEDSUBOPERATIONS);
    count(DCM_NumberOfFailedSuboperations, rsp.NumberOfFailedSubOperations, O_GET_NUMBEROFFAILEDSUBOPERATIONS);
    count(DCM_NumberOfWarningSuboperations, rsp.NumberOfWarningSubOperations, O_GET_NUMBEROFWARNINGSUBOPERATIONS);
  }
  return out;
}

// Reads a data set of no interest to its last fragment and drops it: at most max_bytes, on the
// presentation context of the command it follows. Empty: read; otherwise why not.
std::string skip_data_set(T_ASC_Association* assoc, T_ASC_PresentationContextID pid, int timeout, std::size_t max_bytes, OFCondition& c) {
  std::size_t bytes = 0;
  for (;;) {
    DUL_PDV pdv{};
    c = next_pdv(assoc, timeout, &pdv);
    if (c.bad()) return condition_text(c);
    if (pdv.pdvType != DUL_DATASETPDV) return "a command where a data set was expected";
    if (pdv.presentationContextID != pid) return "a data set on another presentation context than its command";
    bytes += pdv.fragmentLength;
    if (bytes > max_bytes) return "a data set larger than " + std::to_string(max_bytes) + " bytes where an identifier was expected";
    if (pdv.lastPDV) return {};
  }
}

// ---- The SCP.

struct Scp {
  const ScpOptions& options;
  const InstanceFn& on_instance;
  const LogFn& log;
  const std::atomic<bool>* stop;

  bool stopping() const { return stop != nullptr && stop->load(std::memory_order_relaxed); }
  void emit(EventKind kind, const std::string& peer, std::string message, std::uint64_t bytes = 0) const {
    if (log) log(Event{kind, peer, std::move(message), bytes});
  }
  // Refuses the association with the given reason; the caller destroys it.
  static void reject(T_ASC_Association* assoc, T_ASC_RejectParametersResult result, T_ASC_RejectParametersSource source,
                     T_ASC_RejectParametersReason reason) {
    T_ASC_RejectParameters rej{result, source, reason};
    ASC_rejectAssociation(assoc, &rej);
  }
  void serve(T_ASC_Association* assoc, const std::string& peer, const std::string& host, const std::string& calling) const;
  // false: the association is over (aborted); the caller stops serving it.
  bool store(T_ASC_Association* assoc, T_ASC_PresentationContextID pid, T_DIMSE_C_StoreRQ& rq, const std::string& peer,
             const std::string& host, const std::string& calling) const;
};

bool Scp::store(T_ASC_Association* assoc, T_ASC_PresentationContextID pid, T_DIMSE_C_StoreRQ& rq, const std::string& peer,
                const std::string& host, const std::string& calling) const {
  StoreRules rules{options.incoming, options.limits.max_dataset_bytes, {}, options.limits.dimse_timeout_seconds, options.sync_received,
                   calling, host};
  std::uint64_t reported = 0;
  const std::string sop_instance = cut(trim(rq.AffectedSOPInstanceUID), 64);
  const StoreOutcome out = receive_store(assoc, pid, rq, rules, on_instance, [&](std::uint64_t bytes) {
    if (bytes - reported >= (std::uint64_t{4} << 20)) {
      reported = bytes;
      emit(EventKind::Progress, peer, sop_instance, bytes);
    }
    return !stopping();
  });
  if (out.answered || out.response_failed) {
    const std::uint16_t st = out.verdict.status;
    const bool failure = (st & 0xF000) == 0xA000 || (st & 0xF000) == 0xC000 || st == kStatusSopClassNotSupported;
    const std::string what = trim(rq.AffectedSOPInstanceUID);
    if (failure) emit(EventKind::Refused, peer, what + ": " + out.verdict.comment, out.bytes);
    else emit(EventKind::Stored, peer, what + (out.verdict.comment.empty() ? std::string() : ": " + out.verdict.comment), out.bytes);
  }
  if (!out.answered) emit(EventKind::Aborted, peer, out.aborted, out.bytes);
  return out.answered;
}

void Scp::serve(T_ASC_Association* assoc, const std::string& peer, const std::string& host, const std::string& calling) const {
  const Limits& limits = options.limits;
  int idle = 0;
  for (;;) {
    if (stopping()) {
      emit(EventKind::Aborted, peer, "listener stopped");
      ASC_abortAssociation(assoc);
      return;
    }
    if (!ASC_dataWaiting(assoc, 1)) {
      if (++idle >= limits.dimse_timeout_seconds) {
        emit(EventKind::Aborted, peer, "idle for " + std::to_string(idle) + " s; association aborted");
        ASC_abortAssociation(assoc);
        return;
      }
      continue;
    }
    idle = 0;
    Command command = read_command(assoc, limits.dimse_timeout_seconds, CommandRules{});
    const OFCondition& c = command.condition;
    T_DIMSE_Message& msg = command.msg;
    const T_ASC_PresentationContextID pid = command.pid;
    if (c == DUL_PEERREQUESTEDRELEASE) {
      ASC_acknowledgeRelease(assoc);
      emit(EventKind::Released, peer, "association released");
      return;
    }
    if (c == DUL_PEERABORTEDASSOCIATION) {
      emit(EventKind::Aborted, peer, "the peer aborted the association");
      return;
    }
    if (c.bad() || !command.refused.empty()) {
      emit(EventKind::Aborted, peer, "cannot read a command: " + (c.bad() ? condition_text(c) : command.refused) + "; association aborted");
      ASC_abortAssociation(assoc);
      return;
    }
    if (command.field == DIMSE_C_ECHO_RQ) {
      emit(EventKind::Echo, peer, "C-ECHO");
      if (DIMSE_sendEchoResponse(assoc, pid, &msg.msg.CEchoRQ, STATUS_Success, nullptr).bad()) {
        ASC_abortAssociation(assoc);
        return;
      }
    } else if (command.field == DIMSE_C_STORE_RQ) {
      if (!store(assoc, pid, msg.msg.CStoreRQ, peer, host, calling)) return;
    } else {
      emit(EventKind::Aborted, peer, "unsupported DIMSE command; association aborted");
      ASC_abortAssociation(assoc);
      return;
    }
  }
}

bool host_matches(const std::string& allowed, const std::string& host) {
  if (allowed.empty()) return true;
  if (allowed == host) return true;
  // "localhost" stands for the loopback addresses.
  return allowed == "localhost" && (host == "127.0.0.1" || host == "::1" || host == "localhost");
}

}  // namespace

const char* to_string(EventKind kind) {
  switch (kind) {
    case EventKind::Listening: return "listening";
    case EventKind::AssociationAccepted: return "accepted";
    case EventKind::AssociationRejected: return "rejected";
    case EventKind::Echo: return "echo";
    case EventKind::Stored: return "stored";
    case EventKind::Refused: return "refused";
    case EventKind::Released: return "released";
    case EventKind::Aborted: return "aborted";
    case EventKind::Progress: return "progress";
    case EventKind::Error: return "error";
  }
  return "error";
}

bool valid_ae_title(const std::string& ae) {
  if (ae.empty() || ae.size() > 16) return false;
  bool non_space = false;
  for (const char c : ae) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u >= 0x7f || c == '\\') return false;
    if (c != ' ') non_space = true;
  }
  return non_space;
}

Result<Peer> parse_peer(const std::string& text) {
  const auto at = text.find('@');
  const auto colon = text.rfind(':');
  if (at == std::string::npos || colon == std::string::npos || colon < at) {
    return net_error(ErrorKind::Refused, "a peer is AET@HOST:PORT, not '" + cut(text, 80) + "'");
  }
  Peer p;
  p.ae_title = text.substr(0, at);
  p.host = text.substr(at + 1, colon - at - 1);
  const std::string port = text.substr(colon + 1);
  if (!valid_ae_title(p.ae_title)) return net_error(ErrorKind::Refused, "not a valid AE title: '" + cut(p.ae_title, 32) + "'");
  if (p.host.empty()) return net_error(ErrorKind::Refused, "no host in '" + cut(text, 80) + "'");
  if (port.empty() || port.size() > 5 || !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return net_error(ErrorKind::Refused, "not a port: '" + cut(port, 16) + "'");
  }
  p.port = std::stoi(port);
  if (p.port < 1 || p.port > 65535) return net_error(ErrorKind::Refused, "port out of range: " + port);
  return p;
}

std::string to_string(const Peer& peer) { return peer.ae_title + "@" + peer.host + ":" + std::to_string(peer.port); }

Result<AllowedPeer> parse_allowed(const std::string& text) {
  AllowedPeer a;
  const auto at = text.find('@');
  a.ae_title = text.substr(0, at);
  if (at != std::string::npos) a.host = text.substr(at + 1);
  if (!valid_ae_title(a.ae_title)) return net_error(ErrorKind::Refused, "not a valid AE title: '" + cut(a.ae_title, 32) + "'");
  if (at != std::string::npos && a.host.empty()) return net_error(ErrorKind::Refused, "no host after '@' in '" + cut(text, 80) + "'");
  return a;
}

const std::vector<std::string>& image_storage_sop_classes() {
  static const std::vector<std::string> classes = {
      UID_ComputedRadiographyImageStorage,
      UID_DigitalXRayImageStorageForPresentation,
      UID_DigitalXRayImageStorageForProcessing,
      UID_SecondaryCaptureImageStorage,
  };
  return classes;
}

bool is_image_storage_sop_class(const std::string& uid) {
  const auto& c = image_storage_sop_classes();
  return std::find(c.begin(), c.end(), uid) != c.end();
}

Result<core::Done> run_storage_scp(const ScpOptions& options, const InstanceFn& on_instance, const LogFn& log,
                                   const std::atomic<bool>* stop) {
  start_dcmnet();
  if (!valid_ae_title(options.ae_title)) return net_error(ErrorKind::Refused, "not a valid AE title: '" + cut(options.ae_title, 32) + "'");
  if (options.port < 1 || options.port > 65535) return net_error(ErrorKind::Refused, "port out of range: " + std::to_string(options.port));
  const Limits& limits = options.limits;
  if (limits.max_associations < 1 || limits.max_pdu < 4096 || limits.acse_timeout_seconds < 1 || limits.dimse_timeout_seconds < 1) {
    return net_error(ErrorKind::Refused, "network limits out of range");
  }
  std::error_code ec;
  if (!fs::is_directory(options.incoming, ec)) {
    return net_error(ErrorKind::Io, "the incoming folder does not exist: " + options.incoming.string());
  }

  // The allow-list compares addresses, never names from reverse DNS (which a peer can control).
  dcmDisableGethostbyaddr.set(OFTrue);
  const bool secure = options.tls.enabled();
  std::unique_ptr<DcmTLSTransportLayer> tls;
  if (secure) {
    auto layer = tls_layer(options.tls, NET_ACCEPTOR);
    if (!layer) return layer.error();
    tls = std::move(layer.value());
  }
  HandoverLayer plain;  // outlives every connection's network, as the TLS layer
  DcmTransportLayer& layer = tls ? static_cast<DcmTransportLayer&>(*tls) : plain;
  std::string why;
  const int listening = open_listening_socket(options.port, why);
  if (listening < 0) return net_error(ErrorKind::Network, "cannot listen on port " + std::to_string(options.port) + ": " + why);

  Scp scp{options, on_instance, log, stop};
  scp.emit(EventKind::Listening, {}, options.ae_title + " on port " + std::to_string(options.port) + (secure ? " (TLS)" : ""));

  // Storage SOP classes other than the image ones are accepted at negotiation so that such a
  // C-STORE gets a status that says why (0122), not a silent "no presentation context".
  std::vector<const char*> abstract;
  abstract.push_back(UID_VerificationSOPClass);
  for (const auto& s : image_storage_sop_classes()) abstract.push_back(s.c_str());
  for (int i = 0; i < numberOfDcmAllStorageSOPClassUIDs; ++i) {
    if (!is_image_storage_sop_class(dcmAllStorageSOPClassUIDs[i])) abstract.push_back(dcmAllStorageSOPClassUIDs[i]);
  }

  struct Worker {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::list<Worker> workers;
  std::atomic<int> active{0};
  auto reap = [&](bool all) {
    for (auto it = workers.begin(); it != workers.end();) {
      if (all || it->done->load()) {
        it->thread.join();
        it = workers.erase(it);
      } else {
        ++it;
      }
    }
  };
  // A slot among the associations being served, if one is free.
  auto reserve = [&]() {
    int n = active.load();
    while (n < limits.max_associations) {
      if (active.compare_exchange_weak(n, n + 1)) return true;
    }
    return false;
  };

  // Each connection: negotiated, checked and (if accepted) served on a thread of its own, with
  // DCMTK objects of its own, so a peer that stalls holds only its own thread, for at most the
  // ACSE timeout. At most max_associations are served, and at most max_associations +
  // kSpareNegotiations connections are negotiated at once (others wait in the kernel's backlog).
  constexpr int kSpareNegotiations = 8;
  const std::size_t max_negotiations = static_cast<std::size_t>(limits.max_associations + kSpareNegotiations);
  Negotiations negotiations(limits.acse_timeout_seconds);
  auto negotiate = [&](const std::shared_ptr<Negotiation>& me, int socket) {
    Negotiated n;
    const OFCondition rc = receive_association(socket, layer, secure, options.port, limits, n);
    if (rc.bad()) {
      if (scp.stopping()) {
        // shut down by the stop: nothing to say
      } else if (negotiations.timed_out(*me)) {
        scp.emit(EventKind::Error, me->host, "no association request within " + std::to_string(limits.acse_timeout_seconds) + " s" +
                                                 (secure ? " (TLS handshake or request not completed)" : "") + "; connection closed");
      } else {
        scp.emit(EventKind::Error, me->host, std::string(secure ? "association request not received (TLS handshake or request failed): "
                                                                : "association request not received: ") + condition_text(rc));
      }
      negotiations.finish(me);
      return;
    }
    T_ASC_Association* assoc = n.assoc;
    char calling_ae[17] = {};
    char called_ae[17] = {};
    char calling_host[129] = {};
    char called_host[129] = {};
    ASC_getAPTitles(assoc->params, calling_ae, sizeof(calling_ae), called_ae, sizeof(called_ae), nullptr, 0);
    ASC_getPresentationAddresses(assoc->params, calling_host, sizeof(calling_host), called_host, sizeof(called_host));
    // Only spaces are insignificant in an AE title (PS3.5 6.2): one with control characters (a tab,
    // a line feed) is not valid, and never matches an allowed title after trimming.
    const std::string calling = trim_spaces(calling_ae);
    const std::string called = trim_spaces(called_ae);
    std::string host = calling_host;
    if (const auto colon = host.rfind(':'); colon != std::string::npos && host.find(':') == colon) host = host.substr(0, colon);
    const std::string peer = calling + "@" + host;

    const bool allowed = valid_ae_title(calling) && std::any_of(options.allow.begin(), options.allow.end(), [&](const AllowedPeer& a) {
      return a.ae_title == calling && host_matches(a.host, host);
    });
    std::string refusal;
    bool reserved = false;
    if (!allowed) {
      refusal = "calling AE title/host not in the allow-list";
      Scp::reject(assoc, ASC_RESULT_REJECTEDPERMANENT, ASC_SOURCE_SERVICEUSER, ASC_REASON_SU_CALLINGAETITLENOTRECOGNIZED);
    } else if (called != options.ae_title) {
      refusal = "called AE title '" + cut(called, 16) + "' is not ours (" + options.ae_title + ")";
      Scp::reject(assoc, ASC_RESULT_REJECTEDPERMANENT, ASC_SOURCE_SERVICEUSER, ASC_REASON_SU_CALLEDAETITLENOTRECOGNIZED);
    } else if (!(reserved = reserve())) {
      refusal = "already " + std::to_string(limits.max_associations) + " associations (the limit)";
      Scp::reject(assoc, ASC_RESULT_REJECTEDTRANSIENT, ASC_SOURCE_SERVICEPROVIDER_PRESENTATION_RELATED,
                  ASC_REASON_SP_PRES_LOCALLIMITEXCEEDED);
    } else {
      const char* syntaxes[kTransferSyntaxCount];
      std::copy(std::begin(kTransferSyntaxes), std::end(kTransferSyntaxes), syntaxes);
      OFCondition ac = ASC_acceptContextsWithPreferredTransferSyntaxes(assoc->params, abstract.data(), static_cast<int>(abstract.size()),
                                                                       syntaxes, kTransferSyntaxCount);
      if (ac.good()) ac = ASC_acknowledgeAssociation(assoc);
      if (ac.bad()) refusal = "cannot accept the association: " + condition_text(ac);
    }
    negotiations.finish(me);
    if (!refusal.empty()) {
      if (reserved) --active;
      scp.emit(EventKind::AssociationRejected, peer, refusal);
      return;
    }
    scp.emit(EventKind::AssociationAccepted, peer, "association accepted");
    scp.serve(assoc, peer, host, calling);
    ASC_dropSCPAssociation(assoc);
    ASC_destroyAssociation(&n.assoc);
    --active;
  };

  // This thread only accepts: a peer never gets to hold it.
  while (!scp.stopping()) {
    reap(false);
    negotiations.enforce(false);
    if (negotiations.count() >= max_negotiations) {
      negotiations.wait_below(max_negotiations, 250);
      continue;
    }
    pollfd waiting{listening, POLLIN, 0};
    const int ready = ::poll(&waiting, 1, 250);
    if (ready <= 0) continue;
    int socket = ::accept4(listening, nullptr, nullptr, SOCK_CLOEXEC);
    if (socket < 0) {
      if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK && errno != ECONNABORTED) {
        scp.emit(EventKind::Error, {}, "cannot accept a connection: " + errno_text());
        std::this_thread::sleep_for(std::chrono::milliseconds(200));  // e.g. out of file descriptors
      }
      continue;
    }
    if (socket == 0) {  // DCMTK takes an external socket only when it is above 0
      const int moved = ::fcntl(socket, F_DUPFD_CLOEXEC, 1);
      ::close(socket);
      if (moved < 0) continue;
      socket = moved;
    }
    no_delay(socket);  // our responses leave at once (see no_delay)
    auto me = negotiations.start(socket);
    auto done = std::make_shared<std::atomic<bool>>(false);
    try {
      workers.push_back({std::thread([&negotiate, me, socket, done]() {
                           negotiate(me, socket);
                           done->store(true);
                         }),
                         done});
    } catch (const std::system_error& e) {
      ::close(socket);
      negotiations.finish(me);
      scp.emit(EventKind::Error, {}, std::string("cannot start a thread for a connection: ") + e.what());
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
  ::close(listening);
  negotiations.enforce(true);
  reap(true);
  return core::Done{};
}

// ---- SCU.

namespace {

Error scu_error(const std::string& what, const OFCondition& c) { return net_error(ErrorKind::Network, what + ": " + condition_text(c)); }

bool cancelled(const std::atomic<bool>* cancel) { return cancel != nullptr && cancel->load(std::memory_order_relaxed); }

void configure(DcmSCU& scu, const ScuOptions& o) {
  scu.setAETitle(o.our_ae.c_str());
  scu.setPeerAETitle(o.peer.ae_title.c_str());
  scu.setPeerHostName(o.peer.host.c_str());
  scu.setPeerPort(static_cast<Uint16>(o.peer.port));
  scu.setMaxReceivePDULength(o.limits.max_pdu);
  scu.setACSETimeout(static_cast<Uint32>(o.limits.acse_timeout_seconds));
  scu.setDIMSETimeout(static_cast<Uint32>(o.limits.dimse_timeout_seconds));
  scu.setDIMSEBlockingMode(DIMSE_NONBLOCKING);
  scu.setConnectionTimeout(o.limits.connect_timeout_seconds);
}

std::optional<Error> check_scu_options(const ScuOptions& o) {
  if (!valid_ae_title(o.our_ae)) return net_error(ErrorKind::Refused, "not a valid AE title: '" + cut(o.our_ae, 32) + "'");
  if (!valid_ae_title(o.peer.ae_title)) return net_error(ErrorKind::Refused, "not a valid peer AE title: '" + cut(o.peer.ae_title, 32) + "'");
  return std::nullopt;
}

// DcmSCU with its TLS switch public (DCMTK keeps it for subclasses such as DcmTLSSCU).
class Scu : public DcmSCU {
 public:
  using DcmSCU::useSecureConnection;
};

// The SCU's transport layer (TLS, or plain TCP with Nagle off) must outlive its DcmSCU: declare it first.
std::optional<Error> connect(Scu& scu, const ScuOptions& o, std::unique_ptr<DcmTransportLayer>& layer) {
  if (o.tls.enabled()) {
    auto tls = tls_layer(o.tls, NET_REQUESTOR);
    if (!tls) return tls.error();
    layer = std::move(tls.value());
  } else {
    layer = std::make_unique<NoDelayLayer>();
  }
  OFCondition c = scu.initNetwork();
  if (c.bad()) return scu_error("cannot set up the network", c);
  c = scu.useSecureConnection(layer.get());  // on the network and parameters initNetwork made
  if (c.bad()) return scu_error(o.tls.enabled() ? "cannot set up TLS" : "cannot set up the network", c);
  c = scu.negotiateAssociation();
  if (c.bad()) return scu_error("no association with " + to_string(o.peer), c);
  return std::nullopt;
}

std::string string_of(DcmItem* item, const DcmTagKey& tag) {
  OFString v;
  if (item != nullptr && item->findAndGetOFStringArray(tag, v).good()) return trim(v.c_str());
  return {};
}

int int_of(DcmItem* item, const DcmTagKey& tag) {
  const std::string s = string_of(item, tag);
  if (s.empty() || s.size() > 9 || !std::all_of(s.begin(), s.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) return -1;
  return std::stoi(s);
}

class FindScu : public Scu {
 public:
  FindScu(std::vector<StudyMatch>& out, const std::atomic<bool>* cancel) : out_(out), cancel_(cancel) {}
  bool was_cancelled = false;
  Uint16 final_status = 0;

  OFCondition handleFINDResponse(const T_ASC_PresentationContextID presID, QRResponse* response, OFBool& waitForNextResponse) override {
    OFCondition c = DcmSCU::handleFINDResponse(presID, response, waitForNextResponse);
    if (response != nullptr) {
      final_status = response->m_status;
      if (DICOM_PENDING_STATUS(response->m_status) && response->m_dataset != nullptr) {
        DcmDataset* d = response->m_dataset;
        StudyMatch m;
        m.study_instance_uid = string_of(d, DCM_StudyInstanceUID);
        m.patient_id = string_of(d, DCM_PatientID);
        m.patient_name = string_of(d, DCM_PatientName);
        m.study_date = string_of(d, DCM_StudyDate);
        m.study_time = string_of(d, DCM_StudyTime);
        m.accession_number = string_of(d, DCM_AccessionNumber);
        m.study_description = string_of(d, DCM_StudyDescription);
        m.modalities = string_of(d, DCM_ModalitiesInStudy);
        m.series = int_of(d, DCM_NumberOfStudyRelatedSeries);
        m.instances = int_of(d, DCM_NumberOfStudyRelatedInstances);
        if (!m.study_instance_uid.empty()) out_.push_back(std::move(m));
      }
    }
    if (cancelled(cancel_)) {
      was_cancelled = true;
      waitForNextResponse = OFFalse;
    }
    return c;
  }

 private:
  std::vector<StudyMatch>& out_;
  const std::atomic<bool>* cancel_;
};

std::string status_text(Uint16 status) {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "%04X", static_cast<unsigned>(status));
  return buf;
}

// ---- C-GET on an association of our own. DcmSCU holds each instance of a C-GET in memory, or
// streams it to a file named from the peer's SOP Instance UID and then answers every instance
// with success or C000; here each one is streamed to a file named by us (receive_store), an
// instance above the limit is read to its end, dropped and refused (A700), and the statuses are
// on_instance's (0122 for classes Hilum does not keep).

// The association and what it needs, released (or aborted) and freed on the way out.
class Requested {
 public:
  T_ASC_Network* network = nullptr;
  T_ASC_Parameters* params = nullptr;  // until the association holds them
  T_ASC_Association* assoc = nullptr;
  bool established = false;
  Requested() = default;
  Requested(const Requested&) = delete;
  Requested& operator=(const Requested&) = delete;
  ~Requested() { close(false); }
  void close(bool release) {
    if (assoc != nullptr) {
      if (established) {
        if (!release || ASC_releaseAssociation(assoc).bad()) ASC_abortAssociation(assoc);
      }
      ASC_dropAssociation(assoc);
      ASC_destroyAssociation(&assoc);  // the parameters with it
      params = nullptr;
    }
    if (params != nullptr) ASC_destroyAssociationParameters(&params);
    if (network != nullptr) ASC_dropNetwork(&network);
    established = false;
  }
};

class GetSession {
 public:
  GetSession(T_ASC_Association* assoc, T_ASC_PresentationContextID pid, const ScuOptions& options, const fs::path& incoming,
             const InstanceFn& on_instance, const RetrieveProgressFn& progress, const std::atomic<bool>* cancel)
      : assoc_(assoc), pid_(pid), options_(options), incoming_(incoming), on_instance_(on_instance), progress_(progress), cancel_(cancel) {}

  RetrieveReport report;
  RetrieveProgress state;
  bool was_cancelled = false;
  bool over_limit = false;      // an instance would have taken the retrieve past max_retrieve_bytes
  Uint16 final_status = 0;

  // One C-GET of a study, to its final response (or a cancel). Bad: the association broke (it is
  // then aborted or unusable).
  OFCondition get(const std::string& study_uid) {
    state = RetrieveProgress{};
    state.study_instance_uid = study_uid;
    DcmDataset keys;
    keys.putAndInsertString(DCM_QueryRetrieveLevel, "STUDY");
    keys.putAndInsertString(DCM_StudyInstanceUID, study_uid.c_str());
    T_DIMSE_Message req{};
    req.CommandField = DIMSE_C_GET_RQ;
    T_DIMSE_C_GetRQ& rq = req.msg.CGetRQ;
    rq.MessageID = assoc_->nextMsgID++;
    OFStandard::strlcpy(rq.AffectedSOPClassUID, UID_GETStudyRootQueryRetrieveInformationModel, sizeof(rq.AffectedSOPClassUID));
    rq.Priority = DIMSE_PRIORITY_MEDIUM;
    rq.DataSetType = DIMSE_DATASET_PRESENT;
    OFCondition c = DIMSE_sendMessageUsingMemoryData(assoc_, pid_, &req, nullptr, &keys, nullptr, nullptr);
    if (c.bad()) return c;
    const int timeout = options_.limits.dimse_timeout_seconds;
    for (;;) {
      Command command = read_command(assoc_, timeout, CommandRules{kMaxGetResponseBytes, true});
      if (command.condition.bad()) return command.condition;
      if (!command.refused.empty()) return refuse(command.refused);
      T_DIMSE_Message& msg = command.msg;
      const T_ASC_PresentationContextID pid = command.pid;
      if (command.field == DIMSE_C_GET_RSP) {
        const T_DIMSE_C_GetRSP& rsp = msg.msg.CGetRSP;
        if (rsp.MessageIDBeingRespondedTo != rq.MessageID) return refuse("a C-GET response to another request");
        if (rsp.DataSetType != DIMSE_DATASET_NULL) {  // an identifier (failed instances): read and dropped
          const std::string why = skip_data_set(assoc_, pid, timeout, kMaxIdentifierBytes, c);
          if (c.bad()) return c;
          if (!why.empty()) return refuse(why);
        }
        final_status = rsp.DimseStatus;
        if (rsp.opts & O_GET_NUMBEROFREMAININGSUBOPERATIONS) state.remaining = rsp.NumberOfRemainingSubOperations;
        if (rsp.opts & O_GET_NUMBEROFCOMPLETEDSUBOPERATIONS) state.completed = rsp.NumberOfCompletedSubOperations;
        if (rsp.opts & O_GET_NUMBEROFFAILEDSUBOPERATIONS) state.failed = rsp.NumberOfFailedSubOperations;
        if (rsp.opts & O_GET_NUMBEROFWARNINGSUBOPERATIONS) state.warning = rsp.NumberOfWarningSubOperations;
        if (progress_) progress_(state);
        if (!DICOM_PENDING_STATUS(rsp.DimseStatus)) return EC_Normal;
      } else if (command.field == DIMSE_C_STORE_RQ) {
        if (!store(pid, msg.msg.CStoreRQ)) return DIMSE_READPDVFAILED;
      } else {
        return refuse("a DIMSE command other than C-GET-RSP or C-STORE-RQ (" + status_text(command.field) + "H)");
      }
      if (cancelled(cancel_) || over_limit) {
        was_cancelled = !over_limit;
        DIMSE_sendCancelRequest(assoc_, pid_, rq.MessageID);
        return EC_Normal;
      }
    }
  }

  std::string broken;  // why a C-STORE sub-operation or what the peer sent broke the association off
  bool aborted = false;  // ... and aborted it

 private:
  // What the PACS sent is not what a C-GET allows: the association is aborted.
  OFCondition refuse(const std::string& why) {
    broken = why;
    aborted = true;
    ASC_abortAssociation(assoc_);
    return DIMSE_READPDVFAILED;
  }

  bool store(T_ASC_PresentationContextID pid, T_DIMSE_C_StoreRQ& rq) {
    const Limits& limits = options_.limits;
    const std::uint64_t room = limits.max_retrieve_bytes > bytes_ ? limits.max_retrieve_bytes - bytes_ : 0;
    StoreRules rules{incoming_, std::min(limits.max_dataset_bytes, room),
                     [&](std::uint64_t size) {
                       if (size > limits.max_dataset_bytes) {
                         return StoreVerdict{kStatusOutOfResources, "instance of " + std::to_string(size) + " bytes larger than the limit of " +
                                                                        std::to_string(limits.max_dataset_bytes) + " bytes"};
                       }
                       over_limit = true;  // the C-GET is cancelled after this answer
                       return StoreVerdict{kStatusOutOfResources,
                                           "the retrieve would pass its limit of " + std::to_string(limits.max_retrieve_bytes) + " bytes"};
                     },
                     limits.dimse_timeout_seconds, options_.sync_received, options_.peer.ae_title, options_.peer.host};
    if (over_limit) rules.max_bytes = 0;
    const StoreOutcome out = receive_store(assoc_, pid, rq, rules, on_instance_, [&](std::uint64_t) { return !cancelled(cancel_); });
    if (!out.answered) {
      broken = out.aborted;
      aborted = true;
      if (cancelled(cancel_)) was_cancelled = true;
      return false;
    }
    if (out.verdict.status == kStatusSuccess) {
      bytes_ += out.bytes;
      ++report.received;
      ++state.received;
    } else {
      ++report.refused;
    }
    if (progress_) progress_(state);
    return true;
  }

  T_ASC_Association* assoc_;
  T_ASC_PresentationContextID pid_;
  const ScuOptions& options_;
  const fs::path& incoming_;
  const InstanceFn& on_instance_;
  const RetrieveProgressFn& progress_;
  const std::atomic<bool>* cancel_;
  std::uint64_t bytes_ = 0;  // kept so far, all studies
};

}  // namespace

Result<core::Done> echo(const ScuOptions& options) {
  start_dcmnet();
  if (auto e = check_scu_options(options)) return *e;
  std::unique_ptr<DcmTransportLayer> layer;  // outlives the SCU
  Scu scu;
  configure(scu, options);
  scu.addPresentationContext(UID_VerificationSOPClass, transfer_syntax_list(true));
  if (auto e = connect(scu, options, layer)) return *e;
  const OFCondition c = scu.sendECHORequest(0);
  if (c.bad()) {
    scu.abortAssociation();
    return scu_error("C-ECHO to " + to_string(options.peer) + " failed", c);
  }
  scu.releaseAssociation();
  return core::Done{};
}

Result<std::vector<StudyMatch>> find_studies(const ScuOptions& options, const StudyQuery& q, const std::atomic<bool>* cancel) {
  start_dcmnet();
  if (auto e = check_scu_options(options)) return *e;
  std::vector<StudyMatch> out;
  std::unique_ptr<DcmTransportLayer> layer;  // outlives the SCU
  FindScu scu(out, cancel);
  configure(scu, options);
  scu.addPresentationContext(UID_FINDStudyRootQueryRetrieveInformationModel, transfer_syntax_list(true));
  if (auto e = connect(scu, options, layer)) return *e;
  const T_ASC_PresentationContextID pid = scu.findPresentationContextID(UID_FINDStudyRootQueryRetrieveInformationModel, "");
  if (pid == 0) {
    scu.abortAssociation();
    return net_error(ErrorKind::Refused, to_string(options.peer) + " does not offer Study Root C-FIND");
  }
  DcmDataset keys;
  keys.putAndInsertString(DCM_QueryRetrieveLevel, "STUDY");
  keys.putAndInsertString(DCM_StudyInstanceUID, "");
  keys.putAndInsertString(DCM_PatientID, q.patient_id.c_str());
  keys.putAndInsertString(DCM_PatientName, q.patient_name.c_str());
  keys.putAndInsertString(DCM_AccessionNumber, q.accession_number.c_str());
  std::string range;
  if (!q.date_from.empty() || !q.date_to.empty()) range = q.date_from == q.date_to ? q.date_from : q.date_from + "-" + q.date_to;
  keys.putAndInsertString(DCM_StudyDate, range.c_str());
  keys.putAndInsertString(DCM_StudyTime, "");
  keys.putAndInsertString(DCM_StudyDescription, "");
  keys.putAndInsertString(DCM_ModalitiesInStudy, q.modality.c_str());
  keys.putAndInsertString(DCM_NumberOfStudyRelatedSeries, "");
  keys.putAndInsertString(DCM_NumberOfStudyRelatedInstances, "");
  const OFCondition c = scu.sendFINDRequest(pid, &keys, nullptr);
  if (scu.was_cancelled) {
    scu.abortAssociation();
    return net_error(ErrorKind::Cancelled, "query cancelled");
  }
  if (c.bad()) {
    scu.abortAssociation();
    return scu_error("C-FIND on " + to_string(options.peer) + " failed", c);
  }
  scu.releaseAssociation();
  if (scu.final_status != STATUS_Success && !DICOM_PENDING_STATUS(scu.final_status)) {
    return net_error(ErrorKind::Refused, to_string(options.peer) + " answered the query with status " + status_text(scu.final_status));
  }
  return out;
}

Result<RetrieveReport> get_studies(const ScuOptions& options, const std::vector<std::string>& study_uids, const fs::path& incoming,
                                   const InstanceFn& on_instance, const RetrieveProgressFn& progress, const std::atomic<bool>* cancel) {
  start_dcmnet();
  if (auto e = check_scu_options(options)) return *e;
  std::error_code ec;
  if (!fs::is_directory(incoming, ec)) return net_error(ErrorKind::Io, "the incoming folder does not exist: " + incoming.string());
  const Limits& limits = options.limits;
  std::unique_ptr<DcmTLSTransportLayer> tls;  // outlives the association
  if (options.tls.enabled()) {
    auto layer = tls_layer(options.tls, NET_REQUESTOR);
    if (!layer) return layer.error();
    tls = std::move(layer.value());
  }
  NoDelayLayer plain;  // outlives the association, as the TLS layer
  Requested a;
  OFCondition c = ASC_initializeNetwork(NET_REQUESTOR, 0, limits.acse_timeout_seconds, &a.network);
  if (c.bad()) return scu_error("cannot set up the network", c);
  if (tls && (c = ASC_setTransportLayer(a.network, tls.get(), 0)).bad()) return scu_error("cannot set up TLS", c);
  if (!tls && (c = ASC_setTransportLayer(a.network, &plain, 0)).bad()) return scu_error("cannot set up the network", c);
  c = ASC_createAssociationParameters(&a.params, static_cast<long>(limits.max_pdu));
  if (c.bad()) return scu_error("cannot set up the association", c);
  ASC_setAPTitles(a.params, options.our_ae.c_str(), options.peer.ae_title.c_str(), nullptr);
  const std::string address = options.peer.host + ":" + std::to_string(options.peer.port);
  ASC_setPresentationAddresses(a.params, "localhost", address.c_str());
  if (tls) ASC_setTransportLayerType(a.params, OFTrue);
  // C-GET brings the instances back on this association: we take the SCP role for the storage
  // classes. The structured report classes too, so that a study holding reports (ours) can be
  // retrieved: on_instance says what it keeps (a PACS may fail the whole C-GET over one class
  // nobody negotiated).
  const char* uncompressed[] = {UID_LittleEndianExplicitTransferSyntax, UID_LittleEndianImplicitTransferSyntax};
  T_ASC_PresentationContextID id = 1;
  c = ASC_addPresentationContext(a.params, id, UID_GETStudyRootQueryRetrieveInformationModel, uncompressed, 2);
  for (const auto& cls : image_storage_sop_classes()) {
    if (c.good()) c = ASC_addPresentationContext(a.params, id += 2, cls.c_str(), const_cast<const char**>(kTransferSyntaxes), kTransferSyntaxCount, ASC_SC_ROLE_SCP);
  }
  for (const char* cls : {UID_BasicTextSRStorage, UID_EnhancedSRStorage, UID_ComprehensiveSRStorage}) {
    if (c.good()) c = ASC_addPresentationContext(a.params, id += 2, cls, uncompressed, 2, ASC_SC_ROLE_SCP);
  }
  if (c.bad()) return scu_error("cannot set up the association", c);
  dcmConnectionTimeout.set(limits.connect_timeout_seconds);
  c = ASC_requestAssociation(a.network, a.params, &a.assoc, nullptr, nullptr, DUL_NOBLOCK, limits.acse_timeout_seconds);
  if (a.assoc != nullptr) a.params = nullptr;  // the association holds them now
  if (c.bad()) return scu_error("no association with " + to_string(options.peer), c);
  a.established = true;
  const T_ASC_PresentationContextID pid = ASC_findAcceptedPresentationContextID(a.assoc, UID_GETStudyRootQueryRetrieveInformationModel);
  if (pid == 0) return net_error(ErrorKind::Refused, to_string(options.peer) + " does not offer Study Root C-GET");

  GetSession session(a.assoc, pid, options, incoming, on_instance, progress, cancel);
  for (const std::string& uid : study_uids) {
    if (cancelled(cancel)) break;
    const std::uint64_t refused_before = session.report.refused;
    c = session.get(uid);
    if (session.aborted) a.established = false;
    if (session.over_limit) {
      return net_error(ErrorKind::Refused, "retrieve from " + to_string(options.peer) + " stopped: more than its limit of " +
                                               detail::with_thousands(limits.max_retrieve_bytes) + " bytes (" +
                                               std::to_string(session.report.received) + " instances kept)");
    }
    if (session.was_cancelled) break;
    if (c.bad()) {
      const std::string why = session.broken.empty() ? condition_text(c) : session.broken;
      return net_error(ErrorKind::Network, "C-GET of study " + cut(uid, 64) + " from " + to_string(options.peer) + " failed: " + why);
    }
    const Uint16 status = session.final_status;
    // A PACS answers A702 (no sub-operation succeeded) to a study whose every instance we
    // refused (too large, a class we do not keep): our refusal, counted; not the PACS's failure.
    const bool all_ours = status == STATUS_GET_Refused_OutOfResourcesSubOperations && session.state.failed > 0 &&
                          session.report.refused >= refused_before + static_cast<std::uint64_t>(session.state.failed);
    if (status != STATUS_Success && status != STATUS_GET_Warning_SubOperationsCompleteOneOrMoreFailures && !all_ours) {
      a.close(true);
      return net_error(ErrorKind::Refused, to_string(options.peer) + " answered the C-GET of " + cut(uid, 64) + " with status " + status_text(status));
    }
  }
  if (session.was_cancelled || cancelled(cancel)) {
    return net_error(ErrorKind::Cancelled, "retrieve cancelled after " + std::to_string(session.report.received) + " instances");
  }
  a.close(true);
  return session.report;
}

Result<SendReport> send_files(const ScuOptions& options, const std::vector<fs::path>& files, const SendProgressFn& progress,
                              const std::atomic<bool>* cancel) {
  start_dcmnet();
  if (auto e = check_scu_options(options)) return *e;
  SendReport report;
  // One presentation context per (SOP class, transfer syntax) the files have.
  struct Item {
    fs::path file;
    std::string sop_class;
    std::string ts;
  };
  std::vector<Item> items;
  std::vector<std::pair<std::string, std::string>> contexts;
  for (const fs::path& f : files) {
    DcmFileFormat ff;
    const OFCondition c = ff.loadFile(OFFilename(f.c_str()), EXS_Unknown, EGL_noChange, 4096);
    if (c.bad()) {
      report.failed.push_back({f, "cannot read: " + condition_text(c)});
      continue;
    }
    Item it{f, string_of(ff.getMetaInfo(), DCM_MediaStorageSOPClassUID), string_of(ff.getMetaInfo(), DCM_TransferSyntaxUID)};
    if (it.sop_class.empty() || it.ts.empty()) {
      report.failed.push_back({f, "no SOP class or transfer syntax in the file meta information"});
      continue;
    }
    if (std::find(contexts.begin(), contexts.end(), std::make_pair(it.sop_class, it.ts)) == contexts.end()) {
      contexts.emplace_back(it.sop_class, it.ts);
    }
    items.push_back(std::move(it));
  }
  if (items.empty()) return report;
  if (contexts.size() > 127) return net_error(ErrorKind::Refused, "too many kinds of files for one association");
  std::unique_ptr<DcmTransportLayer> layer;  // outlives the SCU
  Scu scu;
  configure(scu, options);
  for (const auto& [cls, ts] : contexts) {
    OFList<OFString> list;
    list.push_back(ts.c_str());
    scu.addPresentationContext(cls.c_str(), list);
  }
  if (auto e = connect(scu, options, layer)) return *e;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (cancelled(cancel)) {
      scu.abortAssociation();
      return net_error(ErrorKind::Cancelled, "sending cancelled after " + std::to_string(report.sent) + " files");
    }
    const Item& it = items[i];
    const T_ASC_PresentationContextID pid = scu.findPresentationContextID(it.sop_class.c_str(), it.ts.c_str());
    if (pid == 0) {
      report.failed.push_back({it.file, "the peer does not accept " + detail::sop_class_display_name(it.sop_class) + " in this transfer syntax"});
      continue;
    }
    Uint16 status = 0;
    const OFCondition c = scu.sendSTORERequest(pid, OFFilename(it.file.c_str()), nullptr, status);
    if (c.bad()) {
      scu.abortAssociation();
      report.failed.push_back({it.file, "C-STORE failed: " + condition_text(c)});
      return scu_error("sending to " + to_string(options.peer) + " broke off", c);
    }
    if (status == STATUS_Success || (status & 0xF000) == 0xB000) ++report.sent;
    else report.failed.push_back({it.file, "refused with status " + status_text(status)});
    if (progress) progress(i + 1, items.size(), it.file);
  }
  scu.releaseAssociation();
  return report;
}

}  // namespace hilum::dicom::net
