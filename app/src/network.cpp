#include "hilum/app/network.hpp"

#include <cerrno>
#include <cstdlib>
#include <system_error>

#include <signal.h>
#include <unistd.h>

namespace fs = std::filesystem;
namespace net = hilum::dicom::net;

namespace hilum::app {
namespace {

fs::path store_folder(const Catalog& catalog, const ImportOptions& options) {
  return options.store.empty() ? catalog.path().parent_path() / "store" : options.store;
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

InstanceFiler::InstanceFiler(Catalog& catalog, ImportOptions options, ArrivalFn on_arrival)
    : catalog_(catalog), options_(std::move(options)), on_arrival_(std::move(on_arrival)) {
  options_.store = store_folder(catalog_, options_);
}

Result<fs::path> InstanceFiler::prepare_incoming() {
  // One folder per process, so that a listener and a retrieve (two processes, or two filers in
  // the GUI) never clean each other's transfers.
  const fs::path root = options_.store / ".incoming";
  const fs::path incoming = root / std::to_string(::getpid());
  std::error_code ec;
  fs::create_directories(incoming, ec);
  if (ec) return Error{ErrorKind::Io, "cannot create " + incoming.string() + ": " + ec.message()};
  // Folders of processes that are gone (killed while receiving): never complete, never catalogued.
  for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    const auto pid = std::strtol(name.c_str(), nullptr, 10);
    if (pid <= 0 || std::to_string(pid) != name || pid == ::getpid()) continue;
    if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;
    std::error_code rec;
    fs::remove_all(it->path(), rec);
  }
  if (ec) return Error{ErrorKind::Io, "cannot read " + root.string() + ": " + ec.message()};
  return incoming;
}

net::StoreVerdict InstanceFiler::operator()(const net::ReceivedInstance& instance) {
  const std::lock_guard lock(mutex_);
  Arrival arrival{instance, import_received(catalog_, instance.file, options_)};
  if (on_arrival_) on_arrival_(arrival);
  return verdict_of(arrival.filed);
}

Result<core::Done> listen(Catalog& catalog, ListenOptions options, const ArrivalFn& on_arrival, const net::LogFn& log,
                          const std::atomic<bool>* stop) {
  InstanceFiler filer(catalog, options.import, on_arrival);
  auto incoming = filer.prepare_incoming();
  if (!incoming) return incoming.error();
  options.scp.incoming = *incoming;
  auto run = net::run_storage_scp(options.scp, std::ref(filer), log, stop);
  if (!run) return from_dicom(run.error());
  return core::Done{};
}

Result<net::RetrieveReport> retrieve(Catalog& catalog, const net::ScuOptions& scu, const std::vector<std::string>& study_uids,
                                     const ImportOptions& import, const ArrivalFn& on_arrival,
                                     const net::RetrieveProgressFn& progress, const std::atomic<bool>* cancel) {
  InstanceFiler filer(catalog, import, on_arrival);
  auto incoming = filer.prepare_incoming();
  if (!incoming) return incoming.error();
  auto got = net::get_studies(scu, study_uids, *incoming, std::ref(filer), progress, cancel);
  if (!got) return from_dicom(got.error());
  return got.value();
}

}  // namespace hilum::app
