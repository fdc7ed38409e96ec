// Hilum app: the catalog on the hospital network. What arrives (on our Storage SCP, or retrieved
// from a PACS by C-GET) is filed through import_received: the same reading, dedupe, conflict
// checks, store and commit as a folder import (see import.hpp). The DICOM side lives in dicom/
// (hilum/dicom/network.hpp).
//
// Received files are first written to `<store>/.incoming/<pid>/` (same file system as the store,
// so filing them is a link, not a copy); what a killed process left there is removed by the next
// one that starts.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "hilum/app/catalog.hpp"
#include "hilum/app/import.hpp"
#include "hilum/dicom/network.hpp"

namespace hilum::app {

// One instance that arrived, and what the catalog made of it.
struct Arrival {
  dicom::net::ReceivedInstance instance;
  ReceivedFile filed;
};
// Called on the thread that received the instance, one at a time (under the filer's lock).
using ArrivalFn = std::function<void(const Arrival&)>;

// The DIMSE status a peer gets for a filed instance: success for imported and already present,
// 0xC000 (cannot understand, with the reason) for conflicts, non-images and unreadable data.
[[nodiscard]] dicom::net::StoreVerdict verdict_of(const ReceivedFile& filed);

// Files received instances into one catalog (thread-safe: the SCP calls it from every
// association's thread).
//
// Direct mode: each instance is filed before the peer gets its status.
// Queued mode (the listener and retrieve): the checks a status needs are made at once -- Study and
// SOP Instance UIDs the store cannot hold (storable_uid) are refused (0xC000), a SOP Instance UID
// already catalogued (or queued) with other content is refused (0xC000, conflict), the same
// content is acknowledged without filing it again -- then the complete file is renamed to
// `queued-*.dcm` in the incoming folder and the peer gets success. The promise, precisely:
// - before the success response, the instance is fully written (closed) and renamed to its
//   queued-* name: a listener process killed (kill -9, crash) after it loses nothing: the next
//   filer that starts on the store files it (from the folder of the dead process);
// - durability against a power loss or an OS crash is batched (group commit): a syncer thread
//   fdatasyncs every queued file acknowledged since its previous pass, then the incoming folder
//   once, and only then hands them to the two workers that file them (decode, link into the
//   store, catalog commit; each on a catalog connection of its own). An OS crash can lose at most the instances acknowledged during the last
//   pass (a pass takes one fsync per instance plus one; tens of milliseconds here), never a
//   catalogued one: no catalog row is committed before its file is synced.
// Other problems found while filing (pixels that do not decode, a study of another patient) are
// reported through on_arrival, and the instance, acknowledged already, is not lost: it is moved to
// the catalog's local folder, `quarantine/` (with a .txt saying why; ReceivedFile::kept_path).
class InstanceFiler {
 public:
  InstanceFiler(Catalog& catalog, ImportOptions options, ArrivalFn on_arrival = {}, bool queued = false);
  ~InstanceFiler();  // files what is queued, then stops the worker
  InstanceFiler(const InstanceFiler&) = delete;
  InstanceFiler& operator=(const InstanceFiler&) = delete;

  dicom::net::StoreVerdict operator()(const dicom::net::ReceivedInstance& instance);
  // The folder received files are written to first (created; what dead processes left there is
  // removed, their queued files are moved here and queued again).
  [[nodiscard]] Result<std::filesystem::path> prepare_incoming();
  // Waits until every queued instance is filed.
  void drain();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

struct ListenOptions {
  dicom::net::ScpOptions scp;   // scp.incoming is set by listen()
  ImportOptions import;         // import.store: empty = "store" beside the catalog
};

// Runs the Storage SCP until *stop, filing every instance in `catalog`.
[[nodiscard]] Result<core::Done> listen(Catalog& catalog, ListenOptions options, const ArrivalFn& on_arrival,
                                        const dicom::net::LogFn& log, const std::atomic<bool>* stop);

// C-GET of whole studies from a PACS into the catalog (queued filing; returns once every
// received instance is filed). Non-image instances of the studies are refused (0122), not kept.
[[nodiscard]] Result<dicom::net::RetrieveReport> retrieve(Catalog& catalog, const dicom::net::ScuOptions& scu,
                                                          const std::vector<std::string>& study_uids,
                                                          const ImportOptions& import, const ArrivalFn& on_arrival,
                                                          const dicom::net::RetrieveProgressFn& progress,
                                                          const std::atomic<bool>* cancel);

// A dicom/ error as the app's (network failures are Io; cancellation is Interrupted).
[[nodiscard]] Error from_dicom(const dicom::Error& error);

}  // namespace hilum::app
