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
#include <mutex>
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

// Files received instances into one catalog, one at a time (thread-safe: the SCP calls it from
// every association's thread).
class InstanceFiler {
 public:
  InstanceFiler(Catalog& catalog, ImportOptions options, ArrivalFn on_arrival = {});
  dicom::net::StoreVerdict operator()(const dicom::net::ReceivedInstance& instance);
  // The folder received files are written to first (created; folders of dead processes removed).
  [[nodiscard]] Result<std::filesystem::path> prepare_incoming();

 private:
  Catalog& catalog_;
  ImportOptions options_;
  ArrivalFn on_arrival_;
  std::mutex mutex_;
};

struct ListenOptions {
  dicom::net::ScpOptions scp;   // scp.incoming is set by listen()
  ImportOptions import;         // import.store: empty = "store" beside the catalog
};

// Runs the Storage SCP until *stop, filing every instance in `catalog`.
[[nodiscard]] Result<core::Done> listen(Catalog& catalog, ListenOptions options, const ArrivalFn& on_arrival,
                                        const dicom::net::LogFn& log, const std::atomic<bool>* stop);

// C-GET of whole studies from a PACS into the catalog.
[[nodiscard]] Result<dicom::net::RetrieveReport> retrieve(Catalog& catalog, const dicom::net::ScuOptions& scu,
                                                          const std::vector<std::string>& study_uids,
                                                          const ImportOptions& import, const ArrivalFn& on_arrival,
                                                          const dicom::net::RetrieveProgressFn& progress,
                                                          const std::atomic<bool>* cancel);

// A dicom/ error as the app's (network failures are Io; cancellation is Interrupted).
[[nodiscard]] Error from_dicom(const dicom::Error& error);

}  // namespace hilum::app
