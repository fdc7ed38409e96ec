#include "hilum/app/network.hpp"

#include "hilum/app/hash.hpp"
#include "hilum/core/atomic_file.hpp"

#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>
#include <system_error>
#include <thread>
#include <unordered_map>

#include <signal.h>
#include <unistd.h>

namespace fs = std::filesystem;
namespace net = hilum::dicom::net;

namespace hilum::app {
namespace {

fs::path store_folder(const Catalog& catalog, const ImportOptions& options) {
  return options.store.empty() ? catalog.local_folder() / "store" : options.store;
}

}  // namespace

Error from_dicom(const dicom::Error& error) {
  switch (error.kind) {
    case dicom::ErrorKind::Cancelled: return Error{ErrorKind::Interrupted, error.message};
    case dicom::ErrorKind::Refused: return Error{ErrorKind::Invalid, error.message};
    default: return Error{ErrorKind::Io, error.message};
  }
}

net::StoreVerdict verdict_of(const ReceivedFile& filed) {
  switch (filed.outcome) {
    case ReceivedFile::Outcome::Imported: return {};
    case ReceivedFile::Outcome::AlreadyPresent: return {net::kStatusSuccess, filed.reason};
    case ReceivedFile::Outcome::Conflict:
    case ReceivedFile::Outcome::Skipped:
    case ReceivedFile::Outcome::Failed: return {net::kStatusCannotUnderstand, filed.reason};
  }
  return {net::kStatusCannotUnderstand, filed.reason};
}

struct InstanceFiler::State {
  Catalog& catalog;
  ImportOptions options;
  ArrivalFn on_arrival;
  bool queued = false;
  fs::path incoming;
  // Queued: what was acknowledged and then could not be filed is kept here (never removed: the
  // peer was told it was stored, and may have deleted its copy).
  fs::path quarantine;

  std::mutex catalog_mutex;  // the catalog and on_arrival: one user at a time
  std::mutex lookup_mutex;   // the second connection, for the checks made before a status
  std::optional<Catalog> lookup;
  std::mutex queue_mutex;
  std::condition_variable queue_cv;
  std::condition_variable idle_cv;
  std::deque<net::ReceivedInstance> unsynced;  // acknowledged (renamed to queued-*), not yet synced
  std::deque<net::ReceivedInstance> queue;     // synced, to be filed
  std::unordered_map<std::string, std::string> pending;  // SOP Instance UID -> content hash, queued
  int busy = 0;                // instances being filed
  bool syncing = false;
  bool stopping = false;       // the worker: stop once the queue is empty
  bool sync_stopping = false;  // the syncer: stop once nothing is left unsynced
  std::condition_variable sync_cv;
  std::thread syncer;
  std::vector<std::thread> workers;  // filing workers, each on its own catalog connection
  std::uint64_t counter = 0;

  State(Catalog& c, ImportOptions o, ArrivalFn a, bool q)
      : catalog(c), options(std::move(o)), on_arrival(std::move(a)), queued(q), quarantine(q ? c.local_folder() / "quarantine" : fs::path()) {}

  void file(const net::ReceivedInstance& instance) {
    const std::lock_guard lock(catalog_mutex);
    Arrival arrival{instance, import_received(catalog, instance.file, options, quarantine)};
    if (on_arrival) on_arrival(arrival);
  }

  // A filing worker. Two of them file side by side (decoding, thumbnails and the store's fsyncs of
  // one overlap the other's), each on a catalog connection of its own: the catalog serialises
  // their commits (BEGIN IMMEDIATE), and no two queued instances share a SOP Instance UID (the
  // pending map answers a second one at once). on_arrival stays one at a time.
  void run() {
    std::optional<Catalog> own;
    if (auto opened = Catalog::open(catalog.path(), Catalog::Mode::ReadWrite)) own.emplace(std::move(opened.value()));
    for (;;) {
      net::ReceivedInstance next;
      {
        std::unique_lock lock(queue_mutex);
        queue_cv.wait(lock, [&] { return stopping || !queue.empty(); });
        if (queue.empty()) return;
        next = std::move(queue.front());
        queue.pop_front();
        ++busy;
      }
      if (own) {
        Arrival arrival{next, import_received(*own, next.file, options, quarantine)};
        const std::lock_guard lock(catalog_mutex);
        if (on_arrival) on_arrival(arrival);
      } else {
        file(next);  // no connection of its own: on the shared one, one at a time
      }
      {
        const std::lock_guard lock(queue_mutex);
        pending.erase(next.sop_instance_uid);
        --busy;
      }
      idle_cv.notify_all();
    }
  }

  // Group commit: each pass makes every instance acknowledged since the previous pass durable
  // (its data, then the incoming folder that holds its queued-* name, once for all of them), then
  // hands them to the worker. The catalog row of an instance is thus committed only after its file
  // is synced.
  void sync_loop() {
    for (;;) {
      std::vector<net::ReceivedInstance> batch;
      {
        std::unique_lock lock(queue_mutex);
        sync_cv.wait(lock, [&] { return sync_stopping || !unsynced.empty(); });
        if (unsynced.empty()) return;
        batch.assign(std::make_move_iterator(unsynced.begin()), std::make_move_iterator(unsynced.end()));
        unsynced.clear();
        syncing = true;
      }
      // A failed sync is not fatal here: the data are still readable, and filing reads them and
      // fails (reported through on_arrival) if they are not.
      for (const auto& instance : batch) (void)core::fsync_file(instance.file);
      (void)core::fsync_folder(incoming);
      {
        const std::lock_guard lock(queue_mutex);
        for (auto& instance : batch) queue.push_back(std::move(instance));
        syncing = false;
        while (workers.size() < 2) workers.emplace_back([this] { run(); });
      }
      queue_cv.notify_all();
      idle_cv.notify_all();
    }
  }

  void enqueue(net::ReceivedInstance instance, const std::string& hash) {
    {
      const std::lock_guard lock(queue_mutex);
      if (!hash.empty()) pending[instance.sop_instance_uid] = hash;
      unsynced.push_back(std::move(instance));
      if (!syncer.joinable()) syncer = std::thread([this] { sync_loop(); });
    }
    sync_cv.notify_one();
  }
};

InstanceFiler::InstanceFiler(Catalog& catalog, ImportOptions options, ArrivalFn on_arrival, bool queued)
    : state_(std::make_unique<State>(catalog, std::move(options), std::move(on_arrival), queued)) {
  state_->options.store = store_folder(catalog, state_->options);
}

InstanceFiler::~InstanceFiler() {
  {
    const std::lock_guard lock(state_->queue_mutex);
    state_->sync_stopping = true;
  }
  state_->sync_cv.notify_all();
  if (state_->syncer.joinable()) state_->syncer.join();
  {
    const std::lock_guard lock(state_->queue_mutex);
    state_->stopping = true;
  }
  state_->queue_cv.notify_all();
  for (auto& w : state_->workers) w.join();
}

void InstanceFiler::drain() {
  std::unique_lock lock(state_->queue_mutex);
  state_->idle_cv.wait(lock, [&] {
    return state_->unsynced.empty() && !state_->syncing && state_->queue.empty() && state_->busy == 0;
  });
}

Result<fs::path> InstanceFiler::prepare_incoming() {
  // One folder per process, so that a listener and a retrieve (two processes, or two filers in
  // the GUI) never clean each other's transfers.
  const fs::path root = state_->options.store / ".incoming";
  const fs::path incoming = root / std::to_string(::getpid());
  std::error_code ec;
  fs::create_directories(incoming, ec);
  if (ec) return Error{ErrorKind::Io, "cannot create " + incoming.string() + ": " + ec.message()};
  state_->incoming = incoming;
  // Folders of processes that are gone: their partial transfers go, their acknowledged
  // (queued) instances are filed here.
  std::vector<fs::path> recovered;
  for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    const auto pid = std::strtol(name.c_str(), nullptr, 10);
    if (pid <= 0 || std::to_string(pid) != name || pid == ::getpid()) continue;
    if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;
    std::error_code rec;
    for (fs::directory_iterator f(it->path(), rec), fend; !rec && f != fend; f.increment(rec)) {
      const std::string file = f->path().filename().string();
      if (file.rfind("queued-", 0) != 0) continue;
      const fs::path moved = incoming / ("recovered-" + name + "-" + file);
      std::error_code mec;
      fs::rename(f->path(), moved, mec);
      if (!mec) recovered.push_back(moved);
    }
    fs::remove_all(it->path(), rec);
  }
  if (ec) return Error{ErrorKind::Io, "cannot read " + root.string() + ": " + ec.message()};
  for (const fs::path& f : recovered) {
    net::ReceivedInstance instance;
    instance.file = f;
    instance.calling_ae = "(recovered)";
    state_->file(instance);
  }
  return incoming;
}

net::StoreVerdict InstanceFiler::operator()(const net::ReceivedInstance& instance) {
  State& s = *state_;
  if (!s.queued) {
    const std::lock_guard lock(s.catalog_mutex);
    Arrival arrival{instance, import_received(s.catalog, instance.file, s.options)};
    if (s.on_arrival) s.on_arrival(arrival);
    return verdict_of(arrival.filed);
  }
  // Checks the status needs: the same SOP Instance UID catalogued or queued with other content.
  const auto hashed = sha256_file(instance.file);
  if (!hashed) return {net::kStatusOutOfResources, hashed.error().message};
  const std::string& hash = hashed.value();
  auto answer_now = [&](ReceivedFile::Outcome outcome, std::string reason) {
    std::error_code ec;
    fs::remove(instance.file, ec);
    const std::lock_guard lock(s.catalog_mutex);
    Arrival arrival{instance, ReceivedFile{outcome, instance.sop_instance_uid, std::move(reason), {}, {}}};
    if (s.on_arrival) s.on_arrival(arrival);
    return verdict_of(arrival.filed);
  };
  // What the store cannot hold is refused now: acknowledged, it would be dropped once filed, and
  // the peer, told it was stored, might delete its copy.
  if (!storable_uid(instance.sop_instance_uid) || !storable_uid(instance.study_instance_uid)) {
    return answer_now(ReceivedFile::Outcome::Failed, "not a valid DICOM UID in the Study or SOP Instance UID: the instance cannot be stored");
  }
  std::optional<std::string> known;
  {
    const std::lock_guard lock(s.queue_mutex);
    if (auto it = s.pending.find(instance.sop_instance_uid); it != s.pending.end()) known = it->second;
  }
  if (!known) {
    // On a connection of its own (WAL: it never waits for the worker's import to commit).
    const std::lock_guard lock(s.lookup_mutex);
    if (!s.lookup) {
      auto opened = Catalog::open(s.catalog.path(), Catalog::Mode::ReadWrite);
      if (!opened) return {net::kStatusOutOfResources, opened.error().message};
      s.lookup.emplace(std::move(opened.value()));
    }
    auto found = s.lookup->find_instance(instance.sop_instance_uid);
    if (!found) return {net::kStatusOutOfResources, found.error().message};
    if (found->has_value()) known = found->value().content_hash;
  }
  if (known && *known == hash) return answer_now(ReceivedFile::Outcome::AlreadyPresent, "already in the catalog");
  if (known) {
    return answer_now(ReceivedFile::Outcome::Conflict, "SOP Instance UID " + instance.sop_instance_uid +
                                                           " is already in the catalog with different content; nothing was replaced");
  }
  // Acknowledged from here on: a name the recovery of a killed process knows.
  net::ReceivedInstance queued = instance;
  {
    const std::lock_guard lock(s.queue_mutex);
    queued.file = s.incoming / ("queued-" + std::to_string(++s.counter) + ".dcm");
  }
  std::error_code ec;
  fs::rename(instance.file, queued.file, ec);
  if (ec) return {net::kStatusOutOfResources, "cannot queue the instance: " + ec.message()};
  // Synced by the syncer, many at once (see the promise in network.hpp).
  s.enqueue(std::move(queued), hash);
  return {};
}

Result<core::Done> listen(Catalog& catalog, ListenOptions options, const ArrivalFn& on_arrival, const net::LogFn& log,
                          const std::atomic<bool>* stop) {
  InstanceFiler filer(catalog, options.import, on_arrival, true);
  auto incoming = filer.prepare_incoming();
  if (!incoming) return incoming.error();
  options.scp.incoming = *incoming;
  options.scp.sync_received = false;  // the filer syncs in batches
  auto run = net::run_storage_scp(options.scp, std::ref(filer), log, stop);
  filer.drain();  // every acknowledged instance is filed before returning
  if (!run) return from_dicom(run.error());
  return core::Done{};
}

Result<net::RetrieveReport> retrieve(Catalog& catalog, const net::ScuOptions& scu, const std::vector<std::string>& study_uids,
                                     const ImportOptions& import, const ArrivalFn& on_arrival,
                                     const net::RetrieveProgressFn& progress, const std::atomic<bool>* cancel) {
  // Queued, as the listener: the PACS sends the next instance while the last one is filed.
  InstanceFiler filer(catalog, import, on_arrival, true);
  auto incoming = filer.prepare_incoming();
  if (!incoming) return incoming.error();
  net::ScuOptions options = scu;
  options.sync_received = false;  // the filer syncs in batches
  auto got = net::get_studies(options, study_uids, *incoming, std::ref(filer), progress, cancel);
  filer.drain();
  if (!got) return from_dicom(got.error());
  return got.value();
}

}  // namespace hilum::app
