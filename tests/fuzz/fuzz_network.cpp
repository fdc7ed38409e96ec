// Fuzz harness: the DICOM network receiver (hilum-cli listen: dicom::net::run_storage_scp filing
// into the catalog through app::InstanceFiler, queued as the listener files).
//
// The input is the byte stream a peer sends on one TCP connection, as it sends it: typically an
// A-ASSOCIATE-RQ, P-DATA-TF PDUs (a C-STORE or C-ECHO command, a dataset) and an A-RELEASE-RQ
// (tests/fuzz/make_seeds.py writes such streams). One Storage SCP runs for the whole process on a
// loopback port, in a thread of its own; each input is one connection to it: the harness writes the
// input (reading whatever the SCP answers meanwhile), closes its sending side and reads until the
// SCP closes the connection (a few milliseconds; no process per input). The SCP's limits are
// small so that inputs reach them: PDUs of 16 KiB, datasets of 8 KiB.
//
// Covered: DCMTK's upper layer as Hilum drives it (PDU parsing, A-ASSOCIATE-RQ: AE titles,
// presentation contexts, maximum PDU length, user information), Hilum's checks at association (the
// allow-list of calling AE titles and hosts, the called AE title, the association limit), the
// reading of commands (Hilum's bounded reader, then DCMTK's parse of the command set: C-ECHO,
// C-STORE, anything else), the C-STORE's dataset streamed to a file named
// by Hilum, the size limit, the SOP class check, the check of the file against the request (parse,
// SOP Class/Instance UIDs), and the filing (hash, conflict lookup, queued rename, group sync,
// import_received: reading, decoding, the store's atomic write, the catalog commit). A fresh
// catalog is made for each input that reaches the filing (so that every input replays alone).
//
// Not covered: TLS (the handshake is OpenSSL's), the timeouts (a peer that stalls; the network
// tests cover them), several associations at once, the SCU side (C-FIND, C-GET, C-STORE as a
// client: answers from a PACS), the GUI's listener and the network's failures (full disk, resets
// in the middle of a write).
//
// Invariants beyond "no crash, no sanitizer report, no hang":
//  - an association is accepted only from the allowed calling AE title (FUZZSCU, from any host;
//    OTHER only from an address that is not loopback) calling our AE title (HILUM), as the
//    A-ASSOCIATE-RQ's own bytes say (read here, independently of DCMTK);
//  - what reaches the filing is an image storage SOP class, within the size limit, in a file of
//    Hilum's naming in the incoming folder;
//  - the peer is told "success" only for an instance whose UIDs the store can hold (a queued
//    instance is filed after its status: one refused then would be lost);
//  - the SCP closes the connection within 10 s of the peer's last byte;
//  - no single allocation of DCMTK's values (operator new[] nothrow) passes 64 MiB for an input
//    (the replay build counts them here; a libFuzzer campaign has -malloc_limit_mb);
//  - once the connection is closed and the filer drained, nothing is left in the incoming folders,
//    every catalogued instance has its file inside the store and every file in the store is
//    catalogued.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "free_port.hpp"
#include "fuzz_support.hpp"
#include "hilum/app/catalog.hpp"
#include "hilum/app/import.hpp"
#include "hilum/app/network.hpp"
#include "hilum/dicom/network.hpp"

namespace app = hilum::app;
namespace net = hilum::dicom::net;
namespace fs = std::filesystem;
using hilum::fuzz::fail;
using hilum::fuzz::require;

namespace {

constexpr std::uint32_t kMaxPdu = 16384;
constexpr std::uint64_t kMaxDataset = 8192;
constexpr auto kCloseWithin = std::chrono::seconds(10);  // within libFuzzer's -timeout (scripts/fuzz: 20 s)

// The catalog and filer of the current input, made when an instance first reaches the filing.
struct Filing {
  fs::path dir;
  std::optional<app::Catalog> catalog;
  std::unique_ptr<app::InstanceFiler> filer;
};

struct Listener {
  fs::path incoming;
  int port = 0;
  std::atomic<bool> stop{false};
  std::thread thread;

  std::mutex mutex;
  std::condition_variable cv;
  bool listening = false;
  bool ended = false;
  std::string error;
  std::vector<net::Event> events;  // of the current input
  std::unique_ptr<Filing> filing;  // of the current input
  std::uint64_t input = 0;
};

Listener* g_listener = nullptr;

constexpr std::size_t kMaxAllocation = std::size_t{64} << 20;
std::atomic<std::size_t> g_largest_allocation{0};

std::string trimmed(std::string s) {
  const auto nul = s.find('\0');
  if (nul != std::string::npos) s.resize(nul);
  const auto first = s.find_first_not_of(' ');
  if (first == std::string::npos) return {};
  const auto last = s.find_last_not_of(' ');
  return s.substr(first, last - first + 1);
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

bool inside(const fs::path& file, const fs::path& folder) {
  const std::string f = file.lexically_normal().string();
  const std::string d = folder.lexically_normal().string() + "/";
  return starts_with(f, d) && f.find("/../") == std::string::npos;
}

net::StoreVerdict on_instance(const net::ReceivedInstance& in) {
  Listener& l = *g_listener;
  require(in.file.parent_path() == l.incoming && starts_with(in.file.filename().string(), ".hilum-rx-"),
          "a received file not of Hilum's naming: " + in.file.string().substr(0, 200));
  require(net::is_image_storage_sop_class(in.sop_class_uid), "a SOP class Hilum does not keep reached the filing: " + in.sop_class_uid.substr(0, 80));
  require(in.bytes <= kMaxDataset, "a dataset of " + std::to_string(in.bytes) + " bytes passed the limit of " + std::to_string(kMaxDataset));
  std::error_code ec;
  require(fs::file_size(in.file, ec) > in.bytes && !ec, "the received file is shorter than the dataset received");
  app::InstanceFiler* filer = nullptr;
  {
    const std::lock_guard lock(l.mutex);
    if (!l.filing) {
      auto f = std::make_unique<Filing>();
      f->dir = hilum::fuzz::scratch() / ("input-" + std::to_string(l.input));
      fs::remove_all(f->dir);
      fs::create_directories(f->dir);
      auto opened = app::Catalog::open(f->dir / "hilum.db");
      if (!opened) fail("cannot create a catalog: " + opened.error().message);
      f->catalog.emplace(std::move(*opened));
      f->filer = std::make_unique<app::InstanceFiler>(*f->catalog, app::ImportOptions{}, app::ArrivalFn{}, true);
      auto prepared = f->filer->prepare_incoming();
      if (!prepared) fail("cannot prepare the filer's incoming folder: " + prepared.error().message);
      l.filing = std::move(f);
    }
    filer = l.filing->filer.get();
  }
  const net::StoreVerdict verdict = (*filer)(in);
  // Success tells the peer the instance is kept (it may delete its copy): never for one the store
  // cannot hold.
  if (verdict.status == net::kStatusSuccess) {
    require(app::storable_uid(in.sop_instance_uid) && app::storable_uid(in.study_instance_uid),
            "success for an instance whose Study or SOP Instance UID the store refuses: " + in.study_instance_uid.substr(0, 80) + " / " +
                in.sop_instance_uid.substr(0, 80));
  }
  return verdict;
}

// HILUM_FUZZ_VERBOSE=1: the SCP's events on stderr (to see what a seed reaches).
const bool g_verbose = std::getenv("HILUM_FUZZ_VERBOSE") != nullptr;

void log_event(const net::Event& e) {
  if (g_verbose) std::fprintf(stderr, "  scp: %s %s: %s\n", net::to_string(e.kind), e.peer.c_str(), e.message.c_str());
  Listener& l = *g_listener;
  const std::lock_guard lock(l.mutex);
  if (e.kind == net::EventKind::Listening) {
    l.listening = true;
    l.cv.notify_all();
  }
  l.events.push_back(e);
}

void stop_listener() {
  Listener* l = g_listener;
  if (l == nullptr || !l->thread.joinable()) return;
  l->stop = true;
  l->thread.join();
}

void start_listener() {
  static Listener listener;
  g_listener = &listener;
  listener.incoming = hilum::fuzz::scratch() / "incoming";
  fs::create_directories(listener.incoming);
  for (int attempt = 0; attempt < 20; ++attempt) {
    const int port = hilum::test::free_port();
    if (port == 0) continue;
    net::ScpOptions options;
    options.ae_title = "HILUM";
    options.port = port;
    options.allow = {net::AllowedPeer{"FUZZSCU", ""}, net::AllowedPeer{"OTHER", "192.0.2.7"}};
    options.limits.max_associations = 8;
    options.limits.max_pdu = kMaxPdu;
    options.limits.acse_timeout_seconds = 5;
    options.limits.dimse_timeout_seconds = 5;
    options.limits.max_dataset_bytes = kMaxDataset;
    options.incoming = listener.incoming;
    options.sync_received = false;  // as the listener: the filer syncs
    {
      const std::lock_guard lock(listener.mutex);
      listener.listening = false;
      listener.ended = false;
    }
    listener.stop = false;
    listener.thread = std::thread([options] {
      auto run = net::run_storage_scp(options, on_instance, log_event, &g_listener->stop);
      const std::lock_guard lock(g_listener->mutex);
      if (!run) g_listener->error = run.error().message;
      g_listener->ended = true;
      g_listener->cv.notify_all();
    });
    std::unique_lock lock(listener.mutex);
    listener.cv.wait_for(lock, std::chrono::seconds(10), [&] { return listener.listening || listener.ended; });
    if (listener.listening) {
      listener.port = port;
      lock.unlock();
      std::atexit(stop_listener);
      return;
    }
    lock.unlock();
    listener.thread.join();
  }
  fail("cannot start the Storage SCP: " + listener.error);
}

// Connects `fd` to the SCP. A connect() that a signal interrupts (libFuzzer's -timeout alarm, whose
// handler does not restart calls) goes on in the kernel: its outcome is waited for, not taken for a
// failure. Empty when connected, else why not.
std::string connect_to_scp(int fd) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<std::uint16_t>(g_listener->port));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) return {};
  if (errno != EINTR && errno != EINPROGRESS) return std::strerror(errno);
  pollfd p{fd, POLLOUT, 0};
  const auto deadline = std::chrono::steady_clock::now() + kCloseWithin;
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) return "not connected within 10 s";
    const int n = ::poll(&p, 1, static_cast<int>(left));
    if (n > 0) break;
    if (n < 0 && errno != EINTR) return std::strerror(errno);
  }
  int error = 0;
  socklen_t length = sizeof error;
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0) return std::strerror(errno);
  return error == 0 ? std::string() : std::strerror(error);
}

// What the SCP was doing, for a report that it could not be reached.
std::string listener_state() {
  Listener& l = *g_listener;
  const std::lock_guard lock(l.mutex);
  std::string state = l.ended ? "the SCP's thread has ended" + (l.error.empty() ? std::string() : ": " + l.error) : "the SCP's thread runs";
  for (const auto& e : l.events) state += std::string("; ") + net::to_string(e.kind) + ": " + e.message.substr(0, 200);
  return state;
}

// Sends the input on a new connection, reading (and dropping) what the SCP answers, then closes
// the sending side and reads until the SCP closes. false: the SCP did not close in time.
bool converse(const std::uint8_t* data, std::size_t size) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  require(fd >= 0, "cannot create a socket");
  if (const std::string why = connect_to_scp(fd); !why.empty()) {
    ::close(fd);
    fail("cannot connect to the Storage SCP on port " + std::to_string(g_listener->port) + ": " + why + " (" + listener_state() + ")");
  }
  const auto deadline = std::chrono::steady_clock::now() + kCloseWithin;
  std::size_t sent = 0;
  bool sending = true;
  bool closed = false;
  char buffer[16384];
  while (!closed) {
    if (sending && sent == size) {
      ::shutdown(fd, SHUT_WR);
      sending = false;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) break;
    pollfd p{fd, static_cast<short>(POLLIN | (sending ? POLLOUT : 0)), 0};
    const int n = ::poll(&p, 1, static_cast<int>(left));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
      const ssize_t r = ::recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
      if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) closed = true;
    }
    if (sending && !closed && (p.revents & POLLOUT)) {
      const ssize_t w = ::send(fd, data + sent, size - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (w > 0) sent += static_cast<std::size_t>(w);
      else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) sending = false;  // reset: read to the end
    }
  }
  ::close(fd);
  return closed;
}

// The called and calling AE titles of the A-ASSOCIATE-RQ at the start of the input, if it has one.
std::optional<std::pair<std::string, std::string>> requested_titles(const std::uint8_t* data, std::size_t size) {
  if (size < 42 || data[0] != 0x01) return std::nullopt;
  return std::make_pair(trimmed(std::string(reinterpret_cast<const char*>(data) + 10, 16)),
                        trimmed(std::string(reinterpret_cast<const char*>(data) + 26, 16)));
}

std::size_t files_under(const fs::path& folder, bool skip_incoming) {
  std::size_t n = 0;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(folder, ec), end; !ec && it != end; it.increment(ec)) {
    if (skip_incoming && it->is_directory() && it->path().filename() == ".incoming") {
      it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file()) ++n;
  }
  return n;
}

void check_filing(Filing& f) {
  f.filer->drain();
  const fs::path store = f.dir / "store";
  require(files_under(store / ".incoming", false) == 0, "files left in the filer's incoming folder after it drained");
  auto listed = f.catalog->list_instances();
  if (!listed) fail("cannot list the catalog: " + listed.error().message);
  std::set<std::string> uids;
  for (const auto& i : *listed) {
    require(uids.insert(i.sop_instance_uid).second, "a SOP Instance UID catalogued twice");
    for (const std::string& p : {i.path, i.stored_path}) {
      if (p.empty()) continue;
      require(inside(p, store), "a catalogued file outside the store: " + p.substr(0, 200));
      std::error_code ec;
      require(fs::is_regular_file(p, ec), "a catalogued file that does not exist: " + p.substr(0, 200));
    }
  }
  require(files_under(store, true) == listed->size(), "the store holds " + std::to_string(files_under(store, true)) + " files for " +
                                                          std::to_string(listed->size()) + " catalogued instances");
}

}  // namespace

#ifndef HILUM_LIBFUZZER
// DCMTK allocates element values with new (std::nothrow) T[n]: the largest request is noted (the
// allocation itself is the library's, malloc, as libstdc++'s own).
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  std::size_t seen = g_largest_allocation.load(std::memory_order_relaxed);
  while (n > seen && !g_largest_allocation.compare_exchange_weak(seen, n, std::memory_order_relaxed)) {
  }
  return std::malloc(n == 0 ? 1 : n);
}
#endif

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (g_listener == nullptr) start_listener();
  Listener& l = *g_listener;
  {
    const std::lock_guard lock(l.mutex);
    l.events.clear();
    ++l.input;
  }
  g_largest_allocation = 0;
  const bool closed = converse(data, size);
  require(closed, "the Storage SCP did not close the connection within 10 s of the peer's last byte");
  require(g_largest_allocation <= kMaxAllocation,
          "an allocation of " + std::to_string(g_largest_allocation.load()) + " bytes for one peer's input (more than 64 MiB)");

  std::unique_ptr<Filing> filing;
  std::vector<net::Event> events;
  {
    const std::lock_guard lock(l.mutex);
    filing = std::move(l.filing);
    events = l.events;
  }
  // DCMTK's upper layer closes the connection itself when a PDU breaks off (before it returns to
  // Hilum's reception loop, which then removes the partial file): the peer can see the close a
  // moment before the file goes. Left behind means still there 5 s later (found by the campaign:
  // an input ending inside a PDU header, checked at once, failed every time).
  std::error_code ec;
  for (int i = 0; i < 500 && !fs::is_empty(l.incoming, ec); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  require(fs::is_empty(l.incoming, ec), "a received file left in the incoming folder");

  const auto titles = requested_titles(data, size);
  for (const auto& e : events) {
    if (e.kind != net::EventKind::AssociationAccepted) continue;
    require(e.peer == "FUZZSCU@127.0.0.1", "an association accepted from " + e.peer.substr(0, 80));
    require(titles.has_value() && titles->first == "HILUM" && titles->second == "FUZZSCU",
            "an association accepted whose request calls '" + (titles ? titles->first : std::string("?")) + "' from '" +
                (titles ? titles->second : std::string("?")) + "'");
  }
  if (filing) {
    check_filing(*filing);
    if (g_verbose) {
      auto n = filing->catalog->count_instances();
      std::fprintf(stderr, "  filed: %lld instance(s) in the catalog\n", n ? static_cast<long long>(*n) : -1LL);
    }
    const fs::path dir = filing->dir;
    filing.reset();
    fs::remove_all(dir, ec);
  }
  return 0;
}
