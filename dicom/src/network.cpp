#include "hilum/dicom/network.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <system_error>
#include <random>
#include <thread>

#include <fcntl.h>
#include <unistd.h>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcostrmf.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmnet/assoc.h>
#include <dcmtk/dcmnet/dimse.h>
#include <dcmtk/dcmnet/dul.h>
#include <dcmtk/dcmnet/diutil.h>
#include <dcmtk/dcmnet/scu.h>
#include <dcmtk/dcmtls/tlslayer.h>
#include <openssl/x509_vfy.h>

#include "hilum/core/atomic_file.hpp"
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
// they differ), and that it parses (C000 when it does not). Values above 4 KiB stay on disk.
StoreVerdict check_received(const fs::path& file, const std::string& sop_class, const std::string& sop_instance) {
  DcmFileFormat ff;
  const OFCondition c = ff.loadFile(OFFilename(file.c_str()), EXS_Unknown, EGL_noChange, 4096);
  if (c.bad()) return {kStatusCannotUnderstand, "malformed dataset: " + condition_text(c)};
  OFString cls;
  OFString inst;
  ff.getDataset()->findAndGetOFString(DCM_SOPClassUID, cls);
  ff.getDataset()->findAndGetOFString(DCM_SOPInstanceUID, inst);
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

// ---- TLS.

// The TLS layer for one side (NET_ACCEPTOR: our SCP; NET_REQUESTOR: our SCU), or why not.
Result<std::unique_ptr<DcmTLSTransportLayer>> tls_layer(const TlsOptions& tls, T_ASC_NetworkRole role) {
  if (auto problem = tls_problem(tls, role == NET_ACCEPTOR)) return net_error(ErrorKind::Refused, *problem);
  static std::once_flag openssl_once;
  std::call_once(openssl_once, [] { DcmTLSTransportLayer::initializeOpenSSL(); });
  auto layer = std::make_unique<DcmTLSTransportLayer>(role, nullptr, OFFalse);
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
  const std::string sop_class = trim(rq.AffectedSOPClassUID);
  const std::string sop_instance = trim(rq.AffectedSOPInstanceUID);
  const bool keep = is_image_storage_sop_class(sop_class);
  const Limits& limits = options.limits;

  fs::path file;
  int fd = -1;
  std::string write_error;
  if (keep) {
    file = incoming_name(options.incoming);
    DcmOutputFileStream* stream = nullptr;
    OFCondition c = DIMSE_createFilestream(OFFilename(file.c_str()), &rq, assoc, pid, OFTrue, &stream);
    delete stream;  // the meta header is written; the dataset is appended below as it arrives
    if (c.good()) fd = ::open(file.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    if (c.bad() || fd < 0) write_error = "cannot write in " + options.incoming.string() + ": " + (c.bad() ? condition_text(c) : errno_text());
  }
  auto discard = [&]() {
    if (fd >= 0) ::close(fd);
    fd = -1;
    if (!file.empty()) remove_leftover(file);
  };

  std::uint64_t bytes = 0;
  std::uint64_t reported = 0;
  for (;;) {
    DUL_PDV pdv{};
    const OFCondition c = next_pdv(assoc, limits.dimse_timeout_seconds, &pdv);
    if (c.bad()) {
      discard();
      std::string why = c == DUL_READTIMEOUT ? "no data for " + std::to_string(limits.dimse_timeout_seconds) + " s"
                        : c == DUL_PEERABORTEDASSOCIATION ? std::string("the peer aborted or went away")
                                                          : condition_text(c);
      emit(EventKind::Aborted, peer, "transfer of " + cut(sop_instance, 64) + " broken off after " + std::to_string(bytes) + " bytes (" + why + "); nothing kept", bytes);
      ASC_abortAssociation(assoc);
      return false;
    }
    if (pdv.pdvType != DUL_DATASETPDV || pdv.presentationContextID != pid) {
      discard();
      emit(EventKind::Aborted, peer, "unexpected PDV while receiving a dataset; association aborted, nothing kept", bytes);
      ASC_abortAssociation(assoc);
      return false;
    }
    bytes += pdv.fragmentLength;
    if (bytes > limits.max_dataset_bytes) {
      discard();
      emit(EventKind::Aborted, peer, "dataset " + cut(sop_instance, 64) + " larger than the limit of " + std::to_string(limits.max_dataset_bytes) + " bytes; association aborted, nothing kept", bytes);
      ASC_abortAssociation(assoc);
      return false;
    }
    if (stopping()) {
      discard();
      emit(EventKind::Aborted, peer, "stopped during a transfer; nothing kept", bytes);
      ASC_abortAssociation(assoc);
      return false;
    }
    if (fd >= 0 && pdv.fragmentLength > 0 && !write_all(fd, pdv.data, pdv.fragmentLength)) {
      write_error = "cannot write " + file.string() + ": " + errno_text();
      discard();
    }
    if (bytes - reported >= (std::uint64_t{4} << 20)) {
      reported = bytes;
      emit(EventKind::Progress, peer, cut(sop_instance, 64), bytes);
    }
    if (pdv.lastPDV) break;
  }

  StoreVerdict verdict;
  if (!keep) {
    verdict = {kStatusSopClassNotSupported, "not a SOP class Hilum keeps: " + detail::sop_class_display_name(sop_class)};
  } else if (!write_error.empty()) {
    verdict = {kStatusOutOfResources, write_error};
  } else {
    bool synced = true;
    while (options.sync_received && ::fsync(fd) != 0) {
      if (errno == EINTR) continue;
      synced = false;
      break;
    }
    const bool closed = ::close(fd) == 0;
    fd = -1;
    if (!synced || !closed) {
      verdict = {kStatusOutOfResources, "cannot write " + file.string() + ": " + errno_text()};
    } else {
      verdict = check_received(file, sop_class, sop_instance);
      if (verdict.status == kStatusSuccess && on_instance) {
        ReceivedInstance inst{file, sop_class, sop_instance, calling, host, bytes};
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
  const bool failure = (verdict.status & 0xF000) == 0xA000 || (verdict.status & 0xF000) == 0xC000 || verdict.status == kStatusSopClassNotSupported;
  if (failure) {
    emit(EventKind::Refused, peer, sop_instance + ": " + verdict.comment, bytes);
  } else {
    emit(EventKind::Stored, peer, sop_instance + (verdict.comment.empty() ? std::string() : ": " + verdict.comment), bytes);
  }
  const OFCondition c = DIMSE_sendStoreResponse(assoc, pid, &rq, &rsp, detail_ptr);
  if (c.bad()) {
    emit(EventKind::Aborted, peer, "cannot send the C-STORE response: " + condition_text(c));
    ASC_abortAssociation(assoc);
    return false;
  }
  return true;
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
    T_DIMSE_Message msg{};
    T_ASC_PresentationContextID pid = 0;
    DcmDataset* status_detail = nullptr;
    const OFCondition c = DIMSE_receiveCommand(assoc, DIMSE_NONBLOCKING, limits.dimse_timeout_seconds, &pid, &msg, &status_detail);
    delete status_detail;
    if (c == DUL_PEERREQUESTEDRELEASE) {
      ASC_acknowledgeRelease(assoc);
      emit(EventKind::Released, peer, "association released");
      return;
    }
    if (c == DUL_PEERABORTEDASSOCIATION) {
      emit(EventKind::Aborted, peer, "the peer aborted the association");
      return;
    }
    if (c.bad()) {
      emit(EventKind::Aborted, peer, "cannot read a command: " + condition_text(c) + "; association aborted");
      ASC_abortAssociation(assoc);
      return;
    }
    if (msg.CommandField == DIMSE_C_ECHO_RQ) {
      emit(EventKind::Echo, peer, "C-ECHO");
      if (DIMSE_sendEchoResponse(assoc, pid, &msg.msg.CEchoRQ, STATUS_Success, nullptr).bad()) {
        ASC_abortAssociation(assoc);
        return;
      }
    } else if (msg.CommandField == DIMSE_C_STORE_RQ) {
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
  register_codecs();  // keeps DCMTK's log quiet: every problem comes back as an Error
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
  T_ASC_Network* network = nullptr;
  OFCondition c = ASC_initializeNetwork(NET_ACCEPTOR, options.port, limits.acse_timeout_seconds, &network);
  if (c.bad()) return net_error(ErrorKind::Network, "cannot listen on port " + std::to_string(options.port) + ": " + condition_text(c));
  if (tls) {
    c = ASC_setTransportLayer(network, tls.get(), 0);  // ours: destroyed after the network
    if (c.bad()) {
      ASC_dropNetwork(&network);
      return net_error(ErrorKind::Network, "cannot set up TLS on port " + std::to_string(options.port) + ": " + condition_text(c));
    }
  }

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

  while (!scp.stopping()) {
    reap(false);
    if (!ASC_associationWaiting(network, 1)) continue;
    T_ASC_Association* assoc = nullptr;
    c = ASC_receiveAssociation(network, &assoc, static_cast<long>(limits.max_pdu), nullptr, nullptr, secure ? OFTrue : OFFalse,
                               DUL_NOBLOCK, limits.acse_timeout_seconds);
    if (c.bad()) {
      scp.emit(EventKind::Error, {}, std::string(secure ? "association request not received (TLS handshake or request failed): " : "association request not received: ") + condition_text(c));
      if (assoc != nullptr) {
        ASC_dropAssociation(assoc);
        ASC_destroyAssociation(&assoc);
      }
      continue;
    }
    char calling_ae[17] = {};
    char called_ae[17] = {};
    char calling_host[129] = {};
    char called_host[129] = {};
    ASC_getAPTitles(assoc->params, calling_ae, sizeof(calling_ae), called_ae, sizeof(called_ae), nullptr, 0);
    ASC_getPresentationAddresses(assoc->params, calling_host, sizeof(calling_host), called_host, sizeof(called_host));
    const std::string calling = trim(calling_ae);
    const std::string called = trim(called_ae);
    std::string host = calling_host;
    if (const auto colon = host.rfind(':'); colon != std::string::npos && host.find(':') == colon) host = host.substr(0, colon);
    const std::string peer = calling + "@" + host;

    const bool allowed = std::any_of(options.allow.begin(), options.allow.end(), [&](const AllowedPeer& a) {
      return a.ae_title == calling && host_matches(a.host, host);
    });
    std::string refusal;
    if (!allowed) {
      refusal = "calling AE title/host not in the allow-list";
      Scp::reject(assoc, ASC_RESULT_REJECTEDPERMANENT, ASC_SOURCE_SERVICEUSER, ASC_REASON_SU_CALLINGAETITLENOTRECOGNIZED);
    } else if (called != options.ae_title) {
      refusal = "called AE title '" + cut(called, 16) + "' is not ours (" + options.ae_title + ")";
      Scp::reject(assoc, ASC_RESULT_REJECTEDPERMANENT, ASC_SOURCE_SERVICEUSER, ASC_REASON_SU_CALLEDAETITLENOTRECOGNIZED);
    } else if (active.load() >= limits.max_associations) {
      refusal = "already " + std::to_string(limits.max_associations) + " associations (the limit)";
      Scp::reject(assoc, ASC_RESULT_REJECTEDTRANSIENT, ASC_SOURCE_SERVICEPROVIDER_PRESENTATION_RELATED,
                  ASC_REASON_SP_PRES_LOCALLIMITEXCEEDED);
    } else {
      const char* syntaxes[kTransferSyntaxCount];
      std::copy(std::begin(kTransferSyntaxes), std::end(kTransferSyntaxes), syntaxes);
      c = ASC_acceptContextsWithPreferredTransferSyntaxes(assoc->params, abstract.data(), static_cast<int>(abstract.size()),
                                                           syntaxes, kTransferSyntaxCount);
      if (c.good()) c = ASC_acknowledgeAssociation(assoc);
      if (c.bad()) refusal = "cannot accept the association: " + condition_text(c);
    }
    if (!refusal.empty()) {
      scp.emit(EventKind::AssociationRejected, peer, refusal);
      ASC_dropAssociation(assoc);
      ASC_destroyAssociation(&assoc);
      continue;
    }
    scp.emit(EventKind::AssociationAccepted, peer, "association accepted");
    ++active;
    auto done = std::make_shared<std::atomic<bool>>(false);
    try {
      workers.push_back({std::thread([&scp, &active, assoc, peer, host, calling, done]() mutable {
                           scp.serve(assoc, peer, host, calling);
                           ASC_dropSCPAssociation(assoc);
                           ASC_destroyAssociation(&assoc);
                           --active;
                           done->store(true);
                         }),
                         done});
    } catch (const std::system_error& e) {
      --active;
      scp.emit(EventKind::Aborted, peer, std::string("cannot start a thread: ") + e.what());
      ASC_abortAssociation(assoc);
      ASC_destroyAssociation(&assoc);
    }
  }
  reap(true);
  ASC_dropNetwork(&network);
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

// The SCU's TLS layer must outlive its DcmSCU: declare it first.
std::optional<Error> connect(Scu& scu, const ScuOptions& o, std::unique_ptr<DcmTLSTransportLayer>& tls) {
  if (o.tls.enabled()) {
    auto layer = tls_layer(o.tls, NET_REQUESTOR);
    if (!layer) return layer.error();
    tls = std::move(layer.value());
  }
  OFCondition c = scu.initNetwork();
  if (c.bad()) return scu_error("cannot set up the network", c);
  if (tls) {
    c = scu.useSecureConnection(tls.get());  // on the network and parameters initNetwork made
    if (c.bad()) return scu_error("cannot set up TLS", c);
  }
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

class GetScu : public Scu {
 public:
  GetScu(const fs::path& incoming, const InstanceFn& on_instance, const RetrieveProgressFn& progress,
         const std::atomic<bool>* cancel, std::string peer_ae, std::string peer_host, const Limits& limits)
      : incoming_(incoming), on_instance_(on_instance), progress_(progress), cancel_(cancel),
        peer_ae_(std::move(peer_ae)), peer_host_(std::move(peer_host)), limits_(limits) {}

  RetrieveReport report;
  RetrieveProgress state;
  bool was_cancelled = false;
  bool over_limit = false;      // an instance would have taken the retrieve past max_retrieve_bytes
  std::uint64_t bytes = 0;      // written so far, all studies
  Uint16 final_status = 0;
  std::string error;

  OFCondition handleCGETResponse(const T_ASC_PresentationContextID presID, RetrieveResponse* response,
                                 OFBool& continueCGETSession) override {
    OFCondition c = DcmSCU::handleCGETResponse(presID, response, continueCGETSession);
    if (response != nullptr) {
      final_status = response->m_status;
      state.completed = response->m_numberOfCompletedSubops;
      state.remaining = response->m_numberOfRemainingSubops;
      state.failed = response->m_numberOfFailedSubops;
      state.warning = response->m_numberOfWarningSubops;
      if (progress_) progress_(state);
    }
    if ((cancelled(cancel_) || over_limit) && continueCGETSession) {
      was_cancelled = !over_limit;
      sendCANCELRequest(presID);
      continueCGETSession = OFFalse;
    }
    return c;
  }

  OFCondition handleSTORERequest(const T_ASC_PresentationContextID /*presID*/, DcmDataset* incoming,
                                 OFBool& continueCGETSession, Uint16& status) override {
    if (incoming == nullptr) return DIMSE_NULLKEY;
    DcmFileFormat ff(incoming, OFFalse);  // takes ownership
    const std::string sop_class = string_of(incoming, DCM_SOPClassUID);
    const std::string sop_instance = string_of(incoming, DCM_SOPInstanceUID);
    const fs::path file = incoming_name(incoming_);
    StoreVerdict verdict;
    OFCondition c = EC_Normal;
    // What the instance takes on disk (the dataset's encoded length; the file meta adds little).
    const std::uint64_t size = incoming->getLength(EXS_LittleEndianExplicit, EET_ExplicitLength);
    if (!is_image_storage_sop_class(sop_class)) {
      // As on the SCP: only the image classes are kept (reports and others of the study are not).
      verdict = {kStatusSopClassNotSupported, "not a SOP class Hilum keeps: " + detail::sop_class_display_name(sop_class)};
    } else if (over_limit || size > limits_.max_dataset_bytes || bytes + size > limits_.max_retrieve_bytes) {
      // Bounded: a PACS cannot fill the disk. The C-GET is cancelled at its next response.
      if (size <= limits_.max_dataset_bytes) over_limit = true;
      verdict = {kStatusOutOfResources, size > limits_.max_dataset_bytes
                                            ? "instance of " + std::to_string(size) + " bytes larger than the limit of " +
                                                  std::to_string(limits_.max_dataset_bytes) + " bytes"
                                            : "the retrieve would pass its limit of " + std::to_string(limits_.max_retrieve_bytes) + " bytes"};
    } else if ((c = ff.saveFile(OFFilename(file.c_str()), EXS_Unknown)).bad() || !core::fsync_file(file)) {
      verdict = {kStatusOutOfResources, "cannot write " + file.string()};
    } else {
      ReceivedInstance inst{file, sop_class, sop_instance, peer_ae_, peer_host_, 0};
      std::error_code ec;
      inst.bytes = static_cast<std::uint64_t>(fs::file_size(file, ec));
      bytes += std::max(inst.bytes, size);
      try {
        verdict = on_instance_ ? on_instance_(inst) : StoreVerdict{};
      } catch (const std::exception& e) {
        verdict = {kStatusOutOfResources, std::string("cannot file the instance: ") + e.what()};
      }
    }
    remove_leftover(file);
    status = verdict.status;
    if (verdict.status == kStatusSuccess) {
      ++report.received;
      ++state.received;
    } else {
      ++report.refused;
    }
    if (progress_) progress_(state);
    if (cancelled(cancel_)) {
      was_cancelled = true;
      continueCGETSession = OFFalse;
    }
    return EC_Normal;
  }

 private:
  fs::path incoming_;
  const InstanceFn& on_instance_;
  const RetrieveProgressFn& progress_;
  const std::atomic<bool>* cancel_;
  std::string peer_ae_;
  std::string peer_host_;
  Limits limits_;
};

std::string status_text(Uint16 status) {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "%04X", static_cast<unsigned>(status));
  return buf;
}

}  // namespace

Result<core::Done> echo(const ScuOptions& options) {
  register_codecs();  // keeps DCMTK's log quiet: every problem comes back as an Error
  if (auto e = check_scu_options(options)) return *e;
  std::unique_ptr<DcmTLSTransportLayer> tls;  // outlives the SCU
  Scu scu;
  configure(scu, options);
  scu.addPresentationContext(UID_VerificationSOPClass, transfer_syntax_list(true));
  if (auto e = connect(scu, options, tls)) return *e;
  const OFCondition c = scu.sendECHORequest(0);
  if (c.bad()) {
    scu.abortAssociation();
    return scu_error("C-ECHO to " + to_string(options.peer) + " failed", c);
  }
  scu.releaseAssociation();
  return core::Done{};
}

Result<std::vector<StudyMatch>> find_studies(const ScuOptions& options, const StudyQuery& q, const std::atomic<bool>* cancel) {
  register_codecs();  // keeps DCMTK's log quiet: every problem comes back as an Error
  if (auto e = check_scu_options(options)) return *e;
  std::vector<StudyMatch> out;
  std::unique_ptr<DcmTLSTransportLayer> tls;  // outlives the SCU
  FindScu scu(out, cancel);
  configure(scu, options);
  scu.addPresentationContext(UID_FINDStudyRootQueryRetrieveInformationModel, transfer_syntax_list(true));
  if (auto e = connect(scu, options, tls)) return *e;
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
  register_codecs();  // keeps DCMTK's log quiet: every problem comes back as an Error
  if (auto e = check_scu_options(options)) return *e;
  std::error_code ec;
  if (!fs::is_directory(incoming, ec)) return net_error(ErrorKind::Io, "the incoming folder does not exist: " + incoming.string());
  std::unique_ptr<DcmTLSTransportLayer> tls;  // outlives the SCU
  GetScu scu(incoming, on_instance, progress, cancel, options.peer.ae_title, options.peer.host, options.limits);
  configure(scu, options);
  scu.addPresentationContext(UID_GETStudyRootQueryRetrieveInformationModel, transfer_syntax_list(true));
  // C-GET brings the instances back on this association: we take the SCP role for the storage
  // classes. The structured report classes too, so that a study holding reports (ours) can be
  // retrieved: on_instance says what it keeps (a PACS may fail the whole C-GET over one class
  // nobody negotiated).
  for (const auto& cls : image_storage_sop_classes()) scu.addPresentationContext(cls.c_str(), transfer_syntax_list(), ASC_SC_ROLE_SCP);
  for (const char* cls : {UID_BasicTextSRStorage, UID_EnhancedSRStorage, UID_ComprehensiveSRStorage}) {
    scu.addPresentationContext(cls, transfer_syntax_list(true), ASC_SC_ROLE_SCP);
  }
  if (auto e = connect(scu, options, tls)) return *e;
  const T_ASC_PresentationContextID pid = scu.findPresentationContextID(UID_GETStudyRootQueryRetrieveInformationModel, "");
  if (pid == 0) {
    scu.abortAssociation();
    return net_error(ErrorKind::Refused, to_string(options.peer) + " does not offer Study Root C-GET");
  }
  for (const std::string& uid : study_uids) {
    if (cancelled(cancel)) break;
    DcmDataset keys;
    keys.putAndInsertString(DCM_QueryRetrieveLevel, "STUDY");
    keys.putAndInsertString(DCM_StudyInstanceUID, uid.c_str());
    scu.state = RetrieveProgress{};
    scu.state.study_instance_uid = uid;
    const OFCondition c = scu.sendCGETRequest(pid, &keys, nullptr);
    if (scu.over_limit) {
      scu.abortAssociation();
      return net_error(ErrorKind::Refused, "retrieve from " + to_string(options.peer) + " stopped: more than its limit of " +
                                               detail::with_thousands(options.limits.max_retrieve_bytes) + " bytes (" +
                                               std::to_string(scu.report.received) + " instances kept)");
    }
    if (scu.was_cancelled) break;
    if (c.bad()) {
      scu.abortAssociation();
      return scu_error("C-GET of study " + cut(uid, 64) + " from " + to_string(options.peer) + " failed", c);
    }
    if (scu.final_status != STATUS_Success && scu.final_status != STATUS_GET_Warning_SubOperationsCompleteOneOrMoreFailures) {
      scu.releaseAssociation();
      return net_error(ErrorKind::Refused, to_string(options.peer) + " answered the C-GET of " + cut(uid, 64) + " with status " + status_text(scu.final_status));
    }
  }
  if (scu.was_cancelled || cancelled(cancel)) {
    scu.abortAssociation();
    return net_error(ErrorKind::Cancelled, "retrieve cancelled after " + std::to_string(scu.report.received) + " instances");
  }
  scu.releaseAssociation();
  return scu.report;
}

Result<SendReport> send_files(const ScuOptions& options, const std::vector<fs::path>& files, const SendProgressFn& progress,
                              const std::atomic<bool>* cancel) {
  register_codecs();  // keeps DCMTK's log quiet: every problem comes back as an Error
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
  std::unique_ptr<DcmTLSTransportLayer> tls;  // outlives the SCU
  Scu scu;
  configure(scu, options);
  for (const auto& [cls, ts] : contexts) {
    OFList<OFString> list;
    list.push_back(ts.c_str());
    scu.addPresentationContext(cls.c_str(), list);
  }
  if (auto e = connect(scu, options, tls)) return *e;
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
