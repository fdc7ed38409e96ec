// The hospital network with real peers on loopback (label `network`): DCMTK's storescu against
// our Storage SCP and catalog, a real Orthanc (started here with its own configuration and
// storage) for echo / find / C-GET / sending reports back, and dciodvfy / dsrdump on the reports.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <atomic>
#include <chrono>
#include <clocale>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmnet/assoc.h>
#include <dcmtk/dcmnet/dul.h>

#include "free_port.hpp"
#include "hilum/app/catalog.hpp"
#include "hilum/app/classify.hpp"
#include "hilum/app/hash.hpp"
#include "hilum/app/import.hpp"
#include "hilum/app/network.hpp"
#include "hilum/app/sr_export.hpp"
#include "hilum/dicom/network.hpp"
#include "hilum/dicom/reader.hpp"
#include "hilum/testdata/phantom.hpp"
#include "temp_dir_test.hpp"

namespace fs = std::filesystem;
namespace net = hilum::dicom::net;
using namespace hilum;

namespace {

using hilum::test::free_port;

// Starts a program with its output in `log`; returns its pid.
pid_t spawn(const std::vector<std::string>& argv, const fs::path& log) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    FILE* f = std::fopen(log.c_str(), "w");
    if (f != nullptr) {
      ::dup2(::fileno(f), 1);
      ::dup2(::fileno(f), 2);
    }
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  return pid;
}

int wait_exit(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// Runs a program to the end: exit status and output.
std::pair<int, std::string> run(const std::vector<std::string>& argv, const fs::path& log) {
  const int rc = wait_exit(spawn(argv, log));
  std::ifstream in(log);
  std::stringstream ss;
  ss << in.rdbuf();
  return {rc, ss.str()};
}

std::string write_phantom(const fs::path& path, const std::string& patient, const std::string& study_uid = {},
                          int rows = 320, int columns = 256) {
  testdata::DicomSpec spec;
  spec.patient_id = patient;
  spec.study_instance_uid = study_uid;
  spec.phantom.rows = rows;
  spec.phantom.columns = columns;
  spec.phantom.seed = static_cast<std::uint32_t>(std::hash<std::string>{}(path.string()));
  testdata::write_dicom(path, spec);
  return path.string();
}

// Our listener (app::listen, the same as `hilum-cli listen`) on a thread, with its events.
class Listener {
 public:
  Listener(app::Catalog& catalog, const fs::path& store, int port, std::vector<net::AllowedPeer> allow,
           std::optional<net::Limits> limits = std::nullopt, net::TlsOptions tls = {}) {
    app::ListenOptions o;
    o.scp.ae_title = "HILUM";
    o.scp.tls = std::move(tls);
    o.scp.port = port;
    o.scp.allow = std::move(allow);
    o.scp.limits.dimse_timeout_seconds = 10;
    if (limits) o.scp.limits = *limits;
    o.import.store = store;
    thread_ = std::thread([this, &catalog, o]() {
      auto r = app::listen(
          catalog, o,
          [this](const app::Arrival& a) {
            std::lock_guard lock(mutex_);
            arrivals.push_back(a);
            cv_.notify_all();
          },
          [this](const net::Event& e) {
            if (on_event) on_event(e);
            std::lock_guard lock(mutex_);
            events.push_back(e);
            cv_.notify_all();
          },
          &stop_);
      std::lock_guard lock(mutex_);
      ok = r.ok();
      finished = true;
      cv_.notify_all();
    });
    EXPECT_TRUE(wait_for([&] { return has(net::EventKind::Listening) || finished; })) << "the listener did not start";
  }
  ~Listener() { stop(); }
  // Stops the listener (every acknowledged instance filed) and waits for it.
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  bool has(net::EventKind kind, const std::string& text = {}) {
    for (const auto& e : events) {
      if (e.kind == kind && e.message.find(text) != std::string::npos) return true;
    }
    return false;
  }
  template <typename F>
  bool wait_for(F done, int seconds = 20) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, std::chrono::seconds(seconds), done);
  }
  std::string event_text() {
    std::lock_guard lock(mutex_);
    std::string s;
    for (const auto& e : events) s += std::string(net::to_string(e.kind)) + " " + e.peer + ": " + e.message + "\n";
    return s;
  }

  std::vector<app::Arrival> arrivals;
  std::vector<net::Event> events;
  std::function<void(const net::Event&)> on_event;  // called before the event is recorded
  bool ok = false;
  bool finished = false;

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

std::size_t files_below(const fs::path& folder, const std::string& ext = {}) {
  std::size_t n = 0;
  std::error_code ec;
  if (!fs::exists(folder, ec)) return 0;
  for (const auto& e : fs::recursive_directory_iterator(folder, ec)) {
    if (e.is_regular_file() && (ext.empty() || e.path().extension() == ext)) ++n;
  }
  return n;
}

class NetworkTest : public test::TempDirTest {
 protected:
  app::Catalog open_catalog() {
    auto c = app::Catalog::open(path("hilum.db"));
    if (!c) {
      ADD_FAILURE() << c.error().message;
      std::abort();
    }
    return std::move(c.value());
  }
  std::pair<int, std::string> storescu(const std::string& aet, int port, const fs::path& file) {
    return run({HILUM_STORESCU, "-aet", aet, "-aec", "HILUM", "127.0.0.1", std::to_string(port), file.string()},
               path("storescu-" + std::to_string(counter_++) + ".log"));
  }
  // `hilum-cli listen` in its own process: storescu sends `file` once the port is open, then
  // SIGTERM; the listener must exit 0. Its output goes to `out`.
  void cli_listen_receives(const fs::path& file, const fs::path& out) {
    const int port = free_port();
    const pid_t listener = spawn({HILUM_CLI, "--db", path("hilum.db").string(), "listen", "--port", std::to_string(port), "--aet",
                                  "HILUM", "--allow", "STORESCU@localhost"},
                                 out);
    bool sent = false;
    for (int i = 0; i < 100 && !sent; ++i) {  // until the port is open
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      sent = storescu("STORESCU", port, file).first == 0;
    }
    EXPECT_TRUE(sent);
    ::kill(listener, SIGTERM);
    EXPECT_EQ(wait_exit(listener), 0);
  }
  int counter_ = 0;
};

TEST_F(NetworkTest, StorescuInstanceIsCataloguedAndASecondSendDedupes) {
  auto catalog = open_catalog();
  const int port = free_port();
  const fs::path file = path("dx.dcm");
  write_phantom(file, "NET-1");
  Listener listener(catalog, path("store"), port, {{"STORESCU", "127.0.0.1"}});
  auto [rc, out] = storescu("STORESCU", port, file);
  EXPECT_EQ(rc, 0) << out;
  ASSERT_TRUE(listener.wait_for([&] { return listener.arrivals.size() >= 1; })) << listener.event_text();
  EXPECT_EQ(listener.arrivals[0].filed.outcome, app::ReceivedFile::Outcome::Imported) << listener.arrivals[0].filed.reason;
  auto [rc2, out2] = storescu("STORESCU", port, file);
  EXPECT_EQ(rc2, 0) << out2;
  ASSERT_TRUE(listener.wait_for([&] { return listener.arrivals.size() >= 2; }));
  EXPECT_EQ(listener.arrivals[1].filed.outcome, app::ReceivedFile::Outcome::AlreadyPresent);
  EXPECT_EQ(catalog.count_instances().value(), 1);
  const auto instances = catalog.list_instances().value();
  ASSERT_EQ(instances.size(), 1U);
  EXPECT_EQ(instances[0].patient_id, "NET-1");
  // Catalogued in the store, under a name from the (checked) UIDs, never from the AE.
  EXPECT_EQ(fs::path(instances[0].path).parent_path().parent_path(), fs::weakly_canonical(path("store")));
  EXPECT_TRUE(fs::exists(instances[0].path));
  EXPECT_EQ(instances[0].path, instances[0].stored_path);
  EXPECT_EQ(files_below(path("store"), ".dcm"), 1U);
  EXPECT_EQ(files_below(path("store") / ".incoming"), 0U);
}

TEST_F(NetworkTest, CallingAeOutsideTheAllowListIsRejectedAtAssociation) {
  auto catalog = open_catalog();
  const int port = free_port();
  const fs::path file = path("dx.dcm");
  write_phantom(file, "NET-2");
  Listener listener(catalog, path("store"), port, {{"STORESCU", "127.0.0.1"}});
  auto [rc, out] = storescu("INTRUDER", port, file);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("Calling AE Title Not Recognized"), std::string::npos) << out;
  EXPECT_TRUE(listener.wait_for([&] { return listener.has(net::EventKind::AssociationRejected, "allow-list"); }));
  EXPECT_EQ(catalog.count_instances().value(), 0);
  EXPECT_EQ(files_below(path("store"), ".dcm"), 0U);
}

TEST_F(NetworkTest, AllowedAeFromAnotherHostIsRejected) {
  auto catalog = open_catalog();
  const int port = free_port();
  const fs::path file = path("dx.dcm");
  write_phantom(file, "NET-3");
  Listener listener(catalog, path("store"), port, {{"STORESCU", "10.0.0.9"}});
  auto [rc, out] = storescu("STORESCU", port, file);
  EXPECT_NE(rc, 0) << out;
  EXPECT_TRUE(listener.wait_for([&] { return listener.has(net::EventKind::AssociationRejected, "allow-list"); }));
  EXPECT_EQ(catalog.count_instances().value(), 0);
}

TEST_F(NetworkTest, NonImageSopClassIsRefusedWithAStatus) {
  auto catalog = open_catalog();
  const int port = free_port();
  const fs::path file = path("sr.dcm");
  testdata::write_basic_text_sr(file);
  Listener listener(catalog, path("store"), port, {{"STORESCU", "localhost"}});
  auto [rc, out] = run({HILUM_STORESCU, "-v", "-aet", "STORESCU", "-aec", "HILUM", "127.0.0.1", std::to_string(port), file.string()},
                       path("storescu.log"));
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("Received Store Response (Refused: SOPClassNotSupported)"), std::string::npos) << out;  // status 0122
  EXPECT_TRUE(listener.wait_for([&] { return listener.has(net::EventKind::Refused, "Basic Text SR"); })) << listener.event_text();
  EXPECT_EQ(catalog.count_instances().value(), 0);
  EXPECT_EQ(files_below(path("store")), 0U);
}

TEST_F(NetworkTest, SenderKilledMidTransferLeavesNothing) {
  auto catalog = open_catalog();
  const int port = free_port();
  const fs::path file = path("large.dcm");
  write_phantom(file, "NET-KILL", {}, 4096, 4096);  // 32 MiB of pixels
  Listener listener(catalog, path("store"), port, {{"STORESCU", "127.0.0.1"}});
  std::atomic<pid_t> sender{0};
  std::atomic<bool> killed{false};
  // At the first progress report (4 MiB in) the SCP's thread is inside this call, so the sender
  // is blocked on a full socket with most of the file still to send: kill -9 it there.
  listener.on_event = [&](const net::Event& e) {
    if (e.kind == net::EventKind::Progress && !killed.exchange(true)) {
      ::kill(sender.load(), SIGKILL);
    }
  };
  sender = spawn({HILUM_STORESCU, "-aet", "STORESCU", "-aec", "HILUM", "127.0.0.1", std::to_string(port), file.string()},
                 path("storescu.log"));
  EXPECT_EQ(wait_exit(sender), 128 + SIGKILL);
  EXPECT_TRUE(killed.load());
  EXPECT_TRUE(listener.wait_for([&] { return listener.has(net::EventKind::Aborted, "nothing kept"); })) << listener.event_text();
  EXPECT_TRUE(listener.arrivals.empty());
  EXPECT_EQ(catalog.count_instances().value(), 0);
  EXPECT_EQ(files_below(path("store")), 0U) << "a partial file was left";
}

// kill -9 of the sending peer mid-study, 20 times over: each time at the first progress report
// (4 MiB into an instance of about 4.6 MB) of the 1st, 2nd or 3rd instance of a 3-instance study.
// After all 20: whatever the catalog holds is complete (it decodes, its hash is its file's), every
// file in the store is catalogued, and nothing is left in the incoming folders.
TEST_F(NetworkTest, SenderKilledMidStudyTwentyTimesLeavesNoPartialInstance) {
  auto catalog = open_catalog();
  const int port = free_port();
  const std::string study = "1.2.826.0.1.3680043.9.7777.20";
  fs::create_directories(path("study"));
  for (int i = 0; i < 3; ++i) write_phantom(path("study/" + std::to_string(i) + ".dcm"), "NET-KILL20", study, 1536, 1500);
  Listener listener(catalog, path("store"), port, {{"STORESCU", "127.0.0.1"}});
  std::atomic<pid_t> sender{0};
  std::atomic<int> progress{0};
  std::atomic<int> kill_at{1};
  std::atomic<bool> killed{false};
  listener.on_event = [&](const net::Event& e) {
    if (e.kind == net::EventKind::Progress && ++progress == kill_at.load() && !killed.exchange(true)) ::kill(sender.load(), SIGKILL);
  };
  int kills = 0;
  for (int round = 0; round < 20; ++round) {
    progress = 0;
    killed = false;
    kill_at = 1 + round % 3;
    sender = spawn({HILUM_STORESCU, "-aet", "STORESCU", "-aec", "HILUM", "+sd", "127.0.0.1", std::to_string(port), path("study").string()},
                   path("storescu-" + std::to_string(round) + ".log"));
    if (wait_exit(sender) == 128 + SIGKILL) ++kills;
  }
  EXPECT_EQ(kills, 20) << listener.event_text();
  // Wait until the listener has seen every broken-off association, then stop it (filing all).
  EXPECT_TRUE(listener.wait_for([&] {
    std::size_t aborted = 0;
    for (const auto& e : listener.events) aborted += e.kind == net::EventKind::Aborted ? 1 : 0;
    return aborted >= 20;
  })) << listener.event_text();
  listener.stop();
  const auto instances = catalog.list_instances().value();
  EXPECT_GE(instances.size(), 1U) << "no instance completed before a kill";
  EXPECT_LE(instances.size(), 3U);
  for (const auto& inst : instances) {
    EXPECT_EQ(app::sha256_file(inst.stored_path).value(), inst.content_hash) << inst.stored_path;
    auto image = dicom::read_radiograph(inst.stored_path);
    EXPECT_TRUE(image.ok()) << inst.stored_path << ": " << (image.ok() ? "" : image.error().message);
    if (image.ok()) {
      EXPECT_EQ(image->rows, 1536);
    }
  }
  EXPECT_EQ(files_below(path("store"), ".dcm"), instances.size()) << "a file in the store that the catalog does not hold";
  EXPECT_EQ(files_below(path("store") / ".incoming"), 0U) << "a partial or unfiled transfer was left";
}

TEST_F(NetworkTest, ConflictingInstanceGetsAFailureStatusAndReplacesNothing) {
  auto catalog = open_catalog();
  const int port = free_port();
  testdata::DicomSpec spec;
  spec.sop_instance_uid = "1.2.826.0.1.3680043.9.7777.2.1";
  spec.patient_id = "NET-C";
  spec.phantom.seed = 1;
  testdata::write_dicom(path("first.dcm"), spec);
  spec.phantom.seed = 2;  // other pixels, same SOP Instance UID
  testdata::write_dicom(path("second.dcm"), spec);
  Listener listener(catalog, path("store"), port, {{"STORESCU", "127.0.0.1"}});
  EXPECT_EQ(storescu("STORESCU", port, path("first.dcm")).first, 0);
  ASSERT_TRUE(listener.wait_for([&] { return listener.arrivals.size() >= 1; }));
  const auto before = catalog.list_instances().value();
  ASSERT_EQ(before.size(), 1U);
  const std::string stored_hash = app::sha256_file(before[0].path).value();
  auto [rc, out] = run({HILUM_STORESCU, "-v", "-aet", "STORESCU", "-aec", "HILUM", "127.0.0.1", std::to_string(port),
                        path("second.dcm").string()},
                       path("storescu.log"));
  EXPECT_NE(out.find("Received Store Response (Error: CannotUnderstand)"), std::string::npos) << out;
  ASSERT_TRUE(listener.wait_for([&] { return listener.arrivals.size() >= 2; }));
  EXPECT_EQ(listener.arrivals[1].filed.outcome, app::ReceivedFile::Outcome::Conflict);
  EXPECT_NE(listener.arrivals[1].filed.reason.find("different content"), std::string::npos);
  const auto instances = catalog.list_instances().value();
  ASSERT_EQ(instances.size(), 1U);
  EXPECT_EQ(instances[0].path, before[0].path);
  EXPECT_EQ(app::sha256_file(instances[0].path).value(), stored_hash);
  EXPECT_EQ(instances[0].content_hash, stored_hash);
  EXPECT_EQ(files_below(path("store"), ".dcm"), 1U);
}

// A study of another patient is found only while filing, after the peer was told "stored" (queued
// mode): the image is not attached to the other patient (issue 16, defect 2), and it is not lost
// either: it is kept in the catalog's quarantine folder, beside a note saying why, and the arrival
// says where. (Before: the received file was deleted, and the sender, told success, may have
// deleted its own copy.)
TEST_F(NetworkTest, AnAcknowledgedInstanceThatCannotBeFiledIsKeptInQuarantine) {
  auto catalog = open_catalog();
  const int port = free_port();
  const std::string study = "1.2.826.0.1.3680043.9.7777.30";
  write_phantom(path("a.dcm"), "NET-QA", study);
  write_phantom(path("b.dcm"), "NET-QB", study);  // the same study UID, another patient
  const std::string reused_sop = dicom::read_radiograph(path("b.dcm")).value().meta.sop_instance_uid;
  Listener listener(catalog, path("store"), port, {{"STORESCU", "127.0.0.1"}});
  EXPECT_EQ(storescu("STORESCU", port, path("a.dcm")).first, 0);
  ASSERT_TRUE(listener.wait_for([&] { return listener.arrivals.size() >= 1; }));
  EXPECT_EQ(storescu("STORESCU", port, path("b.dcm")).first, 0) << "acknowledged before it was filed";
  ASSERT_TRUE(listener.wait_for([&] { return listener.arrivals.size() >= 2; })) << listener.event_text();
  const app::ReceivedFile& filed = listener.arrivals[1].filed;
  EXPECT_EQ(filed.outcome, app::ReceivedFile::Outcome::Conflict);
  EXPECT_NE(filed.reason.find("reused across patients"), std::string::npos) << filed.reason;
  EXPECT_EQ(catalog.count_instances().value(), 1);

  const fs::path quarantine = catalog.local_folder() / "quarantine";
  ASSERT_EQ(files_below(quarantine, ".dcm"), 1U) << "the acknowledged instance was not kept";
  ASSERT_FALSE(filed.kept_path.empty());
  EXPECT_EQ(fs::path(filed.kept_path).parent_path(), quarantine);
  EXPECT_NE(filed.reason.find(filed.kept_path), std::string::npos) << filed.reason;
  auto kept = dicom::read_radiograph(filed.kept_path);
  ASSERT_TRUE(kept.ok());
  EXPECT_EQ(kept->meta.sop_instance_uid, reused_sop);
  std::ifstream note(fs::path(filed.kept_path).replace_extension(".txt"));
  const std::string why{std::istreambuf_iterator<char>(note), std::istreambuf_iterator<char>()};
  EXPECT_NE(why.find("reused across patients"), std::string::npos) << why;
  listener.stop();
  EXPECT_EQ(files_below(path("store") / ".incoming"), 0U);
}

TEST_F(NetworkTest, AcknowledgedInstanceOfAKilledListenerIsFiledByTheNext) {
  auto catalog = open_catalog();
  // A listener process that acknowledged an instance and was killed before filing it.
  const pid_t dead = spawn({"/bin/true"}, path("true.log"));
  wait_exit(dead);
  const fs::path left = path("store") / ".incoming" / std::to_string(dead);
  fs::create_directories(left);
  write_phantom(left / "queued-1.dcm", "NET-R");
  std::ofstream(left / ".hilum-rx-1-2-3.dcm") << "a partial transfer";
  Listener listener(catalog, path("store"), free_port(), {{"STORESCU", "127.0.0.1"}});
  ASSERT_TRUE(listener.wait_for([&] { return listener.arrivals.size() >= 1; }));
  EXPECT_EQ(listener.arrivals[0].filed.outcome, app::ReceivedFile::Outcome::Imported) << listener.arrivals[0].filed.reason;
  EXPECT_EQ(catalog.count_instances().value(), 1);
  EXPECT_FALSE(fs::exists(left)) << "the dead listener's folder (and its partial transfer) is left";
}

TEST_F(NetworkTest, CliListenPrintsOneLinePerArrivalAndStopsOnSigterm) {
  write_phantom(path("dx.dcm"), "NET-CLI");
  const fs::path out = path("listen.out");
  cli_listen_receives(path("dx.dcm"), out);
  std::ifstream in(out);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_NE(text.str().find("imported "), std::string::npos) << text.str();
  EXPECT_NE(text.str().find(" from STORESCU@127.0.0.1"), std::string::npos) << text.str();
  auto catalog = open_catalog();
  EXPECT_EQ(catalog.count_instances().value(), 1);
}

// With an active model, `listen` caches each received film's model input at the model's input
// size (read from its configuration; its weights are not loaded, nothing is classified).
TEST_F(NetworkTest, CliListenWithAnActiveModelCachesEachFilmsModelInput) {
  {
    auto catalog = open_catalog();
    ASSERT_TRUE(app::import_model(catalog, fs::path(HILUM_MODELS_DIR) / "hilum-cxr-v6", "v6", true).ok());
  }
  write_phantom(path("dx.dcm"), "NET-MODEL");
  cli_listen_receives(path("dx.dcm"), path("listen.out"));
  EXPECT_EQ(open_catalog().count_instances().value(), 1);
  EXPECT_EQ(files_below(path("store") / "model-inputs"), 1U) << "no model input cached for the received film";
}

TEST_F(NetworkTest, DatasetAboveTheSizeCapAbortsTheAssociationAndKeepsNothing) {
  auto catalog = open_catalog();
  const int port = free_port();
  write_phantom(path("big.dcm"), "NET-BIG", {}, 1024, 1024);  // 2 MiB of pixels
  net::Limits limits;
  limits.max_dataset_bytes = 1 << 20;
  Listener listener(catalog, path("store"), port, {{"STORESCU", "127.0.0.1"}}, limits);
  auto [rc, out] = storescu("STORESCU", port, path("big.dcm"));
  EXPECT_NE(rc, 0) << out;
  EXPECT_TRUE(listener.wait_for([&] { return listener.has(net::EventKind::Aborted, "larger than the limit"); })) << listener.event_text();
  EXPECT_EQ(catalog.count_instances().value(), 0);
  EXPECT_EQ(files_below(path("store")), 0U);
}

TEST_F(NetworkTest, AssociationThatNeverReleasesIsAbortedAfterTheTimeout) {
  auto catalog = open_catalog();
  const int port = free_port();
  net::Limits limits;
  limits.dimse_timeout_seconds = 2;
  Listener listener(catalog, path("store"), port, {{"IDLER", "127.0.0.1"}}, limits);
  // A peer that associates and then says nothing (a raw DCMTK association, never released).
  T_ASC_Network* network = nullptr;
  ASSERT_TRUE(ASC_initializeNetwork(NET_REQUESTOR, 0, 10, &network).good());
  T_ASC_Parameters* params = nullptr;
  ASSERT_TRUE(ASC_createAssociationParameters(&params, ASC_DEFAULTMAXPDU).good());
  ASC_setAPTitles(params, "IDLER", "HILUM", nullptr);
  const std::string address = "127.0.0.1:" + std::to_string(port);
  ASC_setPresentationAddresses(params, "localhost", address.c_str());
  const char* syntaxes[] = {UID_LittleEndianImplicitTransferSyntax};
  ASC_addPresentationContext(params, 1, UID_VerificationSOPClass, syntaxes, 1);
  T_ASC_Association* assoc = nullptr;
  ASSERT_TRUE(ASC_requestAssociation(network, params, &assoc).good());
  EXPECT_TRUE(listener.wait_for([&] { return listener.has(net::EventKind::Aborted, "idle for"); }, 10)) << listener.event_text();
  ASC_dropAssociation(assoc);
  ASC_destroyAssociation(&assoc);
  ASC_dropNetwork(&network);
}

// A peer that opens TCP and then sends nothing (or trickles bytes that never make a request): it
// must not hold the listener. Another peer's C-STORE gets through meanwhile, and the stalled
// connection is closed once the ACSE timeout has passed since it connected, however it trickles.
class StalledPeer {
 public:
  explicit StalledPeer(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected = fd_ >= 0 && ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    since = std::chrono::steady_clock::now();
  }
  ~StalledPeer() {
    stop_ = true;
    if (trickler_.joinable()) trickler_.join();
    if (fd_ >= 0) ::close(fd_);
  }
  // One byte every 400 ms (a request header that never completes), from another thread.
  void trickle() {
    trickler_ = std::thread([this] {
      const char bytes[] = {0x01, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x01};
      for (std::size_t i = 0; !stop_ && !closed_seen_; ++i) {
        if (::send(fd_, &bytes[i % sizeof bytes], 1, MSG_NOSIGNAL) != 1) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(400));
      }
    });
  }
  // Whether the listener has closed the connection (without waiting).
  bool closed_by_listener() {
    char b[64];
    const ssize_t n = ::recv(fd_, b, sizeof b, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) closed_seen_ = true;
    return closed_seen_;
  }
  // Seconds from connecting until the listener closed the connection (-1: not within `limit`).
  double seconds_until_closed(double limit) {
    while (std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count() < limit) {
      if (closed_by_listener()) return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return -1;
  }
  bool connected = false;
  std::chrono::steady_clock::time_point since;

 private:
  int fd_ = -1;
  std::atomic<bool> stop_{false};
  std::atomic<bool> closed_seen_{false};
  std::thread trickler_;
};

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// Limits with a 4 s ACSE timeout, the one the stalled peers are held to.
net::Limits short_acse() {
  net::Limits limits;
  limits.acse_timeout_seconds = 4;
  limits.dimse_timeout_seconds = 10;
  return limits;
}

// The listener closed `peer` once its 4 s were up, neither before nor long after; and said why.
void expect_closed_after_the_acse_timeout(StalledPeer& peer, Listener& listener) {
  const double closed = peer.seconds_until_closed(9);
  EXPECT_GE(closed, 3.0);
  EXPECT_LE(closed, 6.5);
  EXPECT_TRUE(listener.wait_for([&] { return listener.has(net::EventKind::Error, "no association request within 4 s"); }))
      << listener.event_text();
}

TEST_F(NetworkTest, StalledConnectionsDoNotHoldTheListenerAndAreClosedAfterTheAcseTimeout) {
  auto catalog = open_catalog();
  const int port = free_port();
  write_phantom(path("dx.dcm"), "NET-STALL");
  Listener listener(catalog, path("store"), port, {{"STORESCU", "127.0.0.1"}}, short_acse());
  StalledPeer silent(port);
  StalledPeer trickling(port);
  ASSERT_TRUE(silent.connected && trickling.connected);
  trickling.trickle();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // both accepted by now
  const auto start = std::chrono::steady_clock::now();
  auto [rc, out] = storescu("STORESCU", port, path("dx.dcm"));
  const double took = seconds_since(start);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_LT(took, 3.0) << "the C-STORE waited for the stalled connections";
  EXPECT_FALSE(silent.closed_by_listener()) << "closed before its timeout";
  ASSERT_TRUE(listener.wait_for([&] { return listener.arrivals.size() >= 1; })) << listener.event_text();
  EXPECT_EQ(catalog.count_instances().value(), 1);
  // Both closed by the listener once their 4 s are up; the trickle does not extend it.
  expect_closed_after_the_acse_timeout(silent, listener);
  expect_closed_after_the_acse_timeout(trickling, listener);
}

// Several peers at once, each negotiated and served on its own thread with DCMTK objects of its
// own: four storescu (two studies each) and three echoscu started together, while a silent and a
// trickling peer stall their negotiations. Every peer succeeds, every instance is catalogued once,
// the stalled ones are closed after the ACSE timeout, and DCMTK's socket hand-over global is
// left clear (the next negotiation would otherwise take a stale socket).
TEST_F(NetworkTest, ConcurrentPeersAreServedWhileOthersStall) {
  auto catalog = open_catalog();
  const int port = free_port();
  constexpr int kSenders = 4;
  constexpr int kPerSender = 2;
  for (int s = 0; s < kSenders; ++s) {
    fs::create_directories(path("sender-" + std::to_string(s)));
    for (int i = 0; i < kPerSender; ++i) {
      write_phantom(path("sender-" + std::to_string(s) + "/" + std::to_string(i) + ".dcm"), "NET-CONC-" + std::to_string(s));
    }
  }
  net::Limits limits = short_acse();
  limits.max_associations = 8;
  Listener listener(catalog, path("store"), port, {{"STORESCU", "127.0.0.1"}, {"ECHOSCU", "127.0.0.1"}}, limits);
  StalledPeer silent(port);
  StalledPeer trickling(port);
  ASSERT_TRUE(silent.connected && trickling.connected);
  trickling.trickle();
  std::vector<std::pair<pid_t, fs::path>> peers;
  for (int round = 0; round < 2; ++round) {  // two waves, the second while the first's associations end
    for (int s = 0; s < kSenders / 2; ++s) {
      const int sender = round * (kSenders / 2) + s;
      const fs::path log = path("storescu-" + std::to_string(sender) + ".log");
      peers.emplace_back(spawn({HILUM_STORESCU, "-aet", "STORESCU", "-aec", "HILUM", "+sd", "127.0.0.1", std::to_string(port),
                                path("sender-" + std::to_string(sender)).string()},
                               log),
                         log);
    }
    for (int e = 0; e < 2 - round; ++e) {
      const fs::path log = path("echoscu-" + std::to_string(round) + "-" + std::to_string(e) + ".log");
      peers.emplace_back(spawn({HILUM_ECHOSCU, "-aet", "ECHOSCU", "-aec", "HILUM", "127.0.0.1", std::to_string(port)}, log), log);
    }
  }
  for (const auto& [pid, log] : peers) {
    const int rc = wait_exit(pid);
    std::stringstream text;
    text << std::ifstream(log).rdbuf();
    EXPECT_EQ(rc, 0) << log << ": " << text.str() << listener.event_text();
  }
  ASSERT_TRUE(listener.wait_for([&] { return listener.arrivals.size() >= std::size_t{kSenders * kPerSender}; }))
      << listener.event_text();
  EXPECT_EQ(catalog.count_instances().value(), kSenders * kPerSender);
  EXPECT_FALSE(listener.has(net::EventKind::AssociationRejected)) << listener.event_text();
  std::size_t echoes = 0;
  listener.wait_for([&] {
    echoes = static_cast<std::size_t>(std::count_if(listener.events.begin(), listener.events.end(),
                                                    [](const net::Event& e) { return e.kind == net::EventKind::Echo; }));
    return echoes >= 3;
  });
  EXPECT_EQ(echoes, 3U) << listener.event_text();
  expect_closed_after_the_acse_timeout(silent, listener);
  expect_closed_after_the_acse_timeout(trickling, listener);
  listener.stop();
  EXPECT_EQ(dcmExternalSocketHandle.get(), DCMNET_INVALID_SOCKET);
  EXPECT_EQ(files_below(path("store") / ".incoming"), 0U);
}

// ---- Structured reports.

class ReportTest : public NetworkTest {
 protected:
  // One image in the catalog with labels (one with a region) and predictions of an active model.
  std::string catalogue_labelled_image(app::Catalog& catalog) {
    const fs::path file = path("image.dcm");
    write_phantom(file, "SR-1");
    auto report = app::import_paths(catalog, {file});
    EXPECT_TRUE(report.ok());
    const auto instances = catalog.list_instances().value();
    EXPECT_EQ(instances.size(), 1U);
    const std::string uid = instances.at(0).sop_instance_uid;
    app::LabelInput effusion{uid, "Effusion", app::LabelValue::Present, app::Region{app::Region::Shape::Rectangle, 12, 34, 56, 78, {}},
                             "Lee^Ann", std::nullopt, std::nullopt, "", app::LabelSource::Cli, app::LabelKind::Reading, ""};
    app::LabelInput nodule{uid, "Nodule", app::LabelValue::Uncertain, std::nullopt, "Lee^Ann", std::nullopt, std::nullopt, "", app::LabelSource::Cli, app::LabelKind::Reading, ""};
    EXPECT_TRUE(catalog.add_labels({effusion, nodule}).ok());
    app::ModelRecord m;
    m.version = "hilum-test-7";
    m.name = "Hilum test ViT";
    m.status = app::ModelStatus::Active;
    m.path = "/models/test";
    auto model = catalog.register_model(m, {"Effusion", "Nodule"});
    EXPECT_TRUE(model.ok());
    EXPECT_TRUE(catalog.put_predictions(uid, model->id, {{"Effusion", 0.8125}, {"Nodule", 0.25}}).ok());
    return uid;
  }
};

TEST_F(ReportTest, StructuredReportPassesDciodvfyAndReadsBackInDsrdump) {
  auto catalog = open_catalog();
  const std::string uid = catalogue_labelled_image(catalog);
  app::SrExportOptions o;
  o.out_dir = path("sr");
  auto written = app::export_reports(catalog, o);
  ASSERT_TRUE(written.ok()) << written.error().message;
  ASSERT_EQ(written->files.size(), 1U);
  EXPECT_TRUE(written->failed.empty());
  const fs::path sr = written->files[0];

  auto [vrc, verify] = run({HILUM_DCIODVFY, sr.string()}, path("dciodvfy.log"));
  EXPECT_EQ(verify.find("Error"), std::string::npos) << verify;
  EXPECT_NE(verify.find("ComprehensiveSR"), std::string::npos) << verify;

  auto [drc, dump] = run({HILUM_DSRDUMP, "+Pc", "+Pu", "+Pl", sr.string()}, path("dsrdump.log"));
  ASSERT_EQ(drc, 0) << dump;
  for (const char* expected : {"126000,DCM,\"Imaging Measurement Report\"", "60046008,SCT,\"Pleural effusion\"",
                               "52101004,SCT,\"Present\"", "42425007,SCT,\"Equivocal\"", "\"Lee^Ann\"", "\"0.8125\"", "\"0.25\"",
                               "\"Hilum test ViT\"", "\"hilum-test-7\"", "111001,DCM,\"Algorithm Name\"",
                               "122157,DCM,\"Probability\"", "POLYLINE,12/34,68/34,68/112,12/112,12/34"}) {
    EXPECT_NE(dump.find(expected), std::string::npos) << expected << " not in\n" << dump;
  }
  EXPECT_NE(dump.find(uid), std::string::npos) << "the report does not reference its image";

  // pydicom, another reader, finds the same values in the same places.
  auto [prc, tree] = run({"/usr/bin/python3", HILUM_READ_SR, sr.string()}, path("pydicom.log"));
  if (prc != 0 && tree.find("No module named 'pydicom'") != std::string::npos) {
    GTEST_SKIP() << "pydicom (Debian python3-pydicom) is not installed";
  }
  ASSERT_EQ(prc, 0) << tree;
  for (const std::string& expected : {std::string("0 CONTAINER Imaging Measurement Report ="), std::string("= Present"),
                                     std::string("= Equivocal"), std::string("= Lee^Ann"), std::string("Algorithm Name = Hilum test ViT"),
                                     std::string("Algorithm Version = hilum-test-7"), std::string("Probability = 0.8125"),
                                     std::string("Probability = 0.25"), std::string("SCOORD"),
                                     std::string("POLYLINE 12/34/68/34/68/112/12/112/12/34"), "= " + uid}) {
    EXPECT_NE(tree.find(expected), std::string::npos) << expected << " not in\n" << tree;
  }

  // The same results give the same report (same UID, same file); a new label gives a new one.
  auto again = app::export_reports(catalog, o);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->files, written->files);
  // Also under a locale that writes decimal commas (the GUI runs under the user's): the UID
  // comes from the content, whose numbers (the region, the probability) must not depend on it.
  if (std::setlocale(LC_ALL, "de_DE.UTF-8") != nullptr) {
    auto german = app::export_reports(catalog, o);
    std::setlocale(LC_ALL, "C");
    ASSERT_TRUE(german.ok());
    EXPECT_EQ(german->files, written->files) << "the report's UID depends on the locale";
  }
  app::LabelInput mass{uid, "Mass", app::LabelValue::Absent, std::nullopt, "Lee^Ann", std::nullopt, std::nullopt, "", app::LabelSource::Cli, app::LabelKind::Reading, ""};
  ASSERT_TRUE(catalog.add_labels({mass}).ok());
  auto changed = app::export_reports(catalog, o);
  ASSERT_TRUE(changed.ok());
  ASSERT_EQ(changed->files.size(), 1U);
  EXPECT_NE(changed->files[0], written->files[0]);
}

// ---- Attention maps (Secondary Capture).

class MapTest : public ReportTest {
 protected:
  // One phantom film in the catalog, scored by the tiny test model (active); returns the image.
  app::Instance catalogue_scored_image(app::Catalog& catalog) {
    const fs::path file = path("film.dcm");
    write_phantom(file, "MAP-1", "", 320, 256);
    EXPECT_TRUE(app::import_paths(catalog, {file}).ok());
    const auto instances = catalog.list_instances().value();
    EXPECT_EQ(instances.size(), 1U);
    EXPECT_TRUE(app::import_model(catalog, fs::path(HILUM_GOLDEN_DIR) / "tiny_multilabel", "tiny-map-1", true).ok());
    auto model = app::load_model(catalog, "");
    EXPECT_TRUE(model.ok());
    EXPECT_TRUE(app::classify(catalog, *model, instances).ok());
    return instances.at(0);
  }
  // The finding the model found most probable for the image.
  app::PredictionRow top_prediction(app::Catalog& catalog, const std::string& uid) {
    const auto model = catalog.active_model().value().value();
    const auto rows = catalog.predictions(uid, model.id).value();
    EXPECT_FALSE(rows.empty());
    return *std::max_element(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.probability < b.probability; });
  }
};

TEST_F(MapTest, AttentionMapIsASecondaryCaptureThatPassesDciodvfyAndReadsBackInPydicom) {
  auto catalog = open_catalog();
  const app::Instance image = catalogue_scored_image(catalog);
  const app::PredictionRow top = top_prediction(catalog, image.sop_instance_uid);
  app::SrExportOptions o;
  o.out_dir = path("results");
  o.attention_maps = true;
  auto written = app::export_reports(catalog, o);
  ASSERT_TRUE(written.ok()) << written.error().message;
  for (const auto& [im, why] : written->failed) ADD_FAILURE() << im << ": " << why;
  EXPECT_EQ(written->reports, 1U);
  EXPECT_EQ(written->maps, 1U);
  ASSERT_EQ(written->files.size(), 2U);
  const fs::path map = written->files[1];
  EXPECT_EQ(map.filename().string().rfind("SC_", 0), 0U) << map;

  auto [vrc, verify] = run({HILUM_DCIODVFY, map.string()}, path("dciodvfy-map.log"));
  EXPECT_EQ(verify.find("Error"), std::string::npos) << verify;
  EXPECT_NE(verify.find("SCImage"), std::string::npos) << verify;

  auto [prc, read] = run({"/usr/bin/python3", HILUM_READ_MAP, map.string()}, path("pydicom-map.log"));
  if (prc != 0 && read.find("No module named") != std::string::npos) GTEST_SKIP() << "pydicom or numpy is not installed: " << read;
  ASSERT_EQ(prc, 0) << read;
  for (const std::string& expected :
       {std::string("SOPClassUID = 1.2.840.10008.5.1.4.1.1.7\n"), std::string("ImageType = DERIVED\\SECONDARY\n"),
        std::string("Modality = OT\n"), std::string("PatientID = MAP-1\n"), "StudyInstanceUID = " + image.study_instance_uid + "\n",
        "ReferencedSOPClassUID = " + image.sop_class_uid + "\n", "ReferencedSOPInstanceUID = " + image.sop_instance_uid + "\n",
        std::string("Purpose = 121322,DCM\n"), std::string("BurnedInAnnotation = NO\n"), std::string("PhotometricInterpretation = RGB\n"),
        std::string("Shape = 320x256x3\n"), std::string("Colour = yes\n"), " for " + top.finding + ", probability ",
        std::string("version tiny-map-1;"), std::string("class-specific relevance")}) {
    EXPECT_NE(read.find(expected), std::string::npos) << expected << " not in\n" << read;
  }
  EXPECT_EQ(read.find("SeriesInstanceUID = " + image.series_instance_uid + "\n"), std::string::npos) << "not a series of its own";
  EXPECT_EQ(read.find("\nSOPInstanceUID = " + image.sop_instance_uid + "\n"), std::string::npos) << "no UID of its own";
  EXPECT_NE(read.find("\nSOPInstanceUID = 2.25."), std::string::npos) << read;

  // The same map is the same object (same UID, same file), under any locale.
  if (std::setlocale(LC_ALL, "de_DE.UTF-8") != nullptr) {
    auto german = app::export_reports(catalog, o);
    std::setlocale(LC_ALL, "C");
    ASSERT_TRUE(german.ok());
    EXPECT_EQ(german->files, written->files);
    auto [grc, again] = run({"/usr/bin/python3", HILUM_READ_MAP, map.string()}, path("pydicom-map-de.log"));
    EXPECT_EQ(again, read);
  }

  // The CLI writes them beside the reports, and not with --no-maps.
  const std::string db = path("hilum.db").string();
  auto [crc, cout] = run({HILUM_CLI, "--db", db, "export", "--format", "sr", "--out", path("cli-results").string()}, path("cli-export.log"));
  EXPECT_EQ(crc, 0) << cout;
  EXPECT_NE(cout.find("wrote 1 structured reports and 1 attention maps"), std::string::npos) << cout;
  EXPECT_TRUE(fs::exists(path("cli-results") / map.filename()));
  auto [nrc, nout] = run({HILUM_CLI, "--db", db, "export", "--format", "sr", "--no-maps", "--out", path("cli-sr").string()},
                         path("cli-export-no-maps.log"));
  EXPECT_EQ(nrc, 0) << nout;
  EXPECT_NE(nout.find("wrote 1 structured reports and 0 attention maps"), std::string::npos) << nout;
}

TEST_F(MapTest, AModelThatDoesNotLoadIsEachMapsFailureAndTheReportIsStillWritten) {
  auto catalog = open_catalog();
  const std::string uid = catalogue_labelled_image(catalog);  // predictions by a model whose folder does not exist
  app::SrExportOptions o;
  o.out_dir = path("results");
  o.attention_maps = true;
  auto written = app::export_reports(catalog, o);
  ASSERT_TRUE(written.ok()) << written.error().message;
  EXPECT_EQ(written->reports, 1U);
  EXPECT_EQ(written->maps, 0U);
  ASSERT_EQ(written->failed.size(), 1U);
  EXPECT_EQ(written->failed[0].first, uid);
  EXPECT_NE(written->failed[0].second.find("no attention map"), std::string::npos) << written->failed[0].second;
}

// ---- A real PACS: Orthanc.

class Orthanc {
 public:
  explicit Orthanc(const fs::path& dir, int hilum_port) : dir_(dir) {
    dicom_port = free_port();
    http_port = free_port();
    fs::create_directories(dir / "storage");
    std::ofstream cfg(dir / "orthanc.json");
    cfg << "{\n"
        << "  \"Name\": \"hilum-test\",\n"
        << "  \"StorageDirectory\": \"" << (dir / "storage").string() << "\",\n"
        << "  \"IndexDirectory\": \"" << (dir / "storage").string() << "\",\n"
        << "  \"DicomAet\": \"ORTHANC\",\n"
        << "  \"DicomPort\": " << dicom_port << ",\n"
        << "  \"HttpPort\": " << http_port << ",\n"
        << "  \"RemoteAccessAllowed\": false,\n"
        << "  \"AuthenticationEnabled\": false,\n"
        << "  \"Plugins\": [],\n"
        << "  \"DicomCheckCalledAet\": true,\n"
        << "  \"DicomModalities\": { \"hilum\": { \"AET\": \"HILUM\", \"Host\": \"127.0.0.1\", \"Port\": " << hilum_port
        << ", \"AllowEcho\": true, \"AllowFind\": true, \"AllowGet\": true, \"AllowMove\": false, \"AllowStore\": true } }\n"
        << "}\n";
    cfg.close();
    pid_ = spawn({HILUM_ORTHANC, "--no-jobs", (dir / "orthanc.json").string()}, dir / "orthanc.log");
    for (int i = 0; i < 100 && !ready; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      ready = net::echo(scu()).ok();
    }
  }
  ~Orthanc() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      wait_exit(pid_);
    }
  }
  net::ScuOptions scu() const {
    net::ScuOptions o;
    o.peer = {"ORTHANC", "127.0.0.1", dicom_port};
    o.our_ae = "HILUM";
    return o;
  }
  // storescu of `file` into this PACS (as HILUM): exit status and output.
  std::pair<int, std::string> store(const fs::path& file) const {
    return run({HILUM_STORESCU, "-aet", "HILUM", "-aec", "ORTHANC", "127.0.0.1", std::to_string(dicom_port), file.string()},
               dir_ / ("storescu-" + file.filename().string() + ".log"));
  }
  std::string log() const {
    std::ifstream in(dir_ / "orthanc.log");
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  int dicom_port = 0;
  int http_port = 0;
  bool ready = false;

 private:
  fs::path dir_;
  pid_t pid_ = -1;
};

TEST_F(ReportTest, OrthancEchoFindRetrieveAndReportBack) {
  Orthanc orthanc(path("orthanc"), free_port());
  ASSERT_TRUE(orthanc.ready) << orthanc.log();
  // The PACS holds one study of two images for patient ORTH-1 (sent with DCMTK's storescu).
  const std::string study = "1.2.826.0.1.3680043.9.7777.1";
  write_phantom(path("a.dcm"), "ORTH-1", study);
  write_phantom(path("b.dcm"), "ORTH-1", study);
  write_phantom(path("other.dcm"), "ORTH-2");
  for (const char* f : {"a.dcm", "b.dcm", "other.dcm"}) {
    auto [rc, out] = run({HILUM_STORESCU, "-aet", "HILUM", "-aec", "ORTHANC", "127.0.0.1", std::to_string(orthanc.dicom_port),
                          path(f).string()},
                         path(std::string(f) + ".log"));
    ASSERT_EQ(rc, 0) << out;
  }
  EXPECT_TRUE(net::echo(orthanc.scu()).ok());

  net::StudyQuery q;
  q.patient_id = "ORTH-1";
  auto found = net::find_studies(orthanc.scu(), q);
  ASSERT_TRUE(found.ok()) << found.error().message;
  ASSERT_EQ(found->size(), 1U);
  EXPECT_EQ(found->at(0).study_instance_uid, study);
  EXPECT_EQ(found->at(0).patient_id, "ORTH-1");
  EXPECT_EQ(found->at(0).instances, 2);

  auto catalog = open_catalog();
  std::vector<net::RetrieveProgress> progress;
  auto got = app::retrieve(catalog, orthanc.scu(), {study}, {}, {}, [&](const net::RetrieveProgress& p) { progress.push_back(p); },
                           nullptr);
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(got->received, 2U);
  EXPECT_EQ(got->refused, 0U);
  EXPECT_FALSE(progress.empty());
  const auto instances = catalog.list_instances().value();
  ASSERT_EQ(instances.size(), 2U);
  for (const auto& i : instances) {
    EXPECT_EQ(i.study_instance_uid, study);
    EXPECT_TRUE(fs::exists(i.stored_path));
  }

  // Results back to the PACS as a structured report and an attention map (the first image is
  // labelled and scored by the tiny test model), in the image's study.
  app::LabelInput label{instances[0].sop_instance_uid, "Effusion", app::LabelValue::Present, std::nullopt, "Lee^Ann",
                        std::nullopt, std::nullopt, "", app::LabelSource::Cli, app::LabelKind::Reading, ""};
  ASSERT_TRUE(catalog.add_labels({label}).ok());
  ASSERT_TRUE(app::import_model(catalog, fs::path(HILUM_GOLDEN_DIR) / "tiny_multilabel", "tiny-orthanc-1", true).ok());
  auto model = app::load_model(catalog, "");
  ASSERT_TRUE(model.ok());
  ASSERT_TRUE(app::classify(catalog, *model, {instances[0]}).ok());
  std::vector<std::string> stages;
  app::SrExportOptions what;
  what.attention_maps = true;
  auto sent = app::send_reports(catalog, orthanc.scu(), what, nullptr,
                                [&](const std::string& stage, std::size_t, std::size_t) { stages.push_back(stage); });
  ASSERT_TRUE(sent.ok()) << sent.error().message;
  EXPECT_EQ(sent->sent, 2U);
  for (const auto& f : sent->failed) ADD_FAILURE() << f.file << ": " << f.reason;
  EXPECT_EQ(stages.front(), "writing");
  EXPECT_EQ(stages.back(), "sending");
  auto after = net::find_studies(orthanc.scu(), q);
  ASSERT_TRUE(after.ok());
  ASSERT_EQ(after->size(), 1U);
  EXPECT_EQ(after->at(0).instances, 4) << "the report and the map are not in the study";
  EXPECT_NE(after->at(0).modalities.find("SR"), std::string::npos) << after->at(0).modalities;
  EXPECT_NE(after->at(0).modalities.find("OT"), std::string::npos) << after->at(0).modalities;
  // Sending the same results again makes no new objects (the same UIDs).
  auto resent = app::send_reports(catalog, orthanc.scu(), what);
  ASSERT_TRUE(resent.ok()) << resent.error().message;
  EXPECT_EQ(resent->sent, 2U);
  auto still = net::find_studies(orthanc.scu(), q);
  ASSERT_TRUE(still.ok());
  ASSERT_EQ(still->size(), 1U);
  EXPECT_EQ(still->at(0).instances, 4);

  // The same through the CLI: echo, find --json, retrieve into another catalog, send.
  const std::string peer = "ORTHANC@127.0.0.1:" + std::to_string(orthanc.dicom_port);
  const std::string db = path("cli.db").string();
  auto [erc, eout] = run({HILUM_CLI, "pacs", "echo", "--peer", peer, "--aet", "HILUM"}, path("cli-echo.log"));
  EXPECT_EQ(erc, 0) << eout;
  auto [frc, fout] = run({HILUM_CLI, "pacs", "find", "--peer", peer, "--aet", "HILUM", "--patient-id", "ORTH-1", "--json"},
                         path("cli-find.log"));
  EXPECT_EQ(frc, 0) << fout;
  EXPECT_NE(fout.find("\"study_instance_uid\":\"" + study + "\""), std::string::npos) << fout;
  EXPECT_NE(fout.find("\"instances\":4"), std::string::npos) << fout;
  auto [rrc, rout] = run({HILUM_CLI, "--db", db, "pacs", "retrieve", "--peer", peer, "--aet", "HILUM", study}, path("cli-get.log"));
  // The study now holds our report and map too: the images are kept, the report left out (not an
  // image: its SOP class is not negotiated), the map received but skipped (a colour picture is not
  // a film), which is not a failure.
  EXPECT_EQ(rrc, 0) << rout;
  EXPECT_NE(rout.find("retrieved 3 instances (1 not kept)"), std::string::npos) << rout;
  EXPECT_NE(rout.find("a colour picture (RGB"), std::string::npos) << rout;
  EXPECT_EQ(rout.find("I: "), std::string::npos) << "DCMTK's log is not quiet:\n" << rout;
  auto [urc, uout] = run({HILUM_CLI, "--db", db, "pacs", "send", "--peer", peer}, path("cli-send-usage.log"));
  EXPECT_EQ(urc, 2) << uout;  // --all or UIDs
  auto [bad, bout] = run({HILUM_CLI, "pacs", "echo", "--peer", "ORTHANC@127.0.0.1"}, path("cli-bad-peer.log"));
  EXPECT_EQ(bad, 2) << bout;  // no port

  // A peer that does not answer: a clear network error, not a hang.
  net::ScuOptions nobody = orthanc.scu();
  nobody.peer.port = free_port();
  auto refused = net::echo(nobody);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().kind, dicom::ErrorKind::Network);
}

// ---- A hostile PACS: our C-GET association reads what the PACS answers through the same bounded
// command reader as our Storage SCP. A peer speaking raw PDUs on loopback accepts the association,
// takes the C-GET request and then answers with a command that never ends, or an identifier of
// megabytes: the retrieve stops at once with a reason that names the bound, rather than keeping
// what arrives until the DIMSE timeout.
class HostilePacs {
 public:
  enum class Answer { EndlessCommand, HugeIdentifier, ResponseToAnotherRequest };
  explicit HostilePacs(Answer answer) : answer_(answer) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(listen_fd_, 1) != 0 ||
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      ADD_FAILURE() << "cannot listen on loopback";
      return;
    }
    port = ntohs(a.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~HostilePacs() {
    ::shutdown(listen_fd_, SHUT_RDWR);
    if (thread_.joinable()) thread_.join();
    ::close(listen_fd_);
  }
  int port = 0;
  std::atomic<bool> sent_answer{false};  // the C-GET request arrived and the answer was begun

 private:
  static void put16(std::string& b, std::uint16_t v) { b += static_cast<char>(v >> 8), b += static_cast<char>(v & 0xFF); }
  static void put32(std::string& b, std::uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) b += static_cast<char>((v >> s) & 0xFF);
  }
  static std::uint32_t get32(const std::string& b, std::size_t at) {
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v = v << 8 | static_cast<unsigned char>(b[at + i]);
    return v;
  }
  static std::uint16_t get16(const std::string& b, std::size_t at) {
    return static_cast<std::uint16_t>(static_cast<unsigned char>(b[at]) << 8 | static_cast<unsigned char>(b[at + 1]));
  }
  bool read_exactly(int fd, std::string& out, std::size_t n) {
    out.assign(n, '\0');
    for (std::size_t got = 0; got < n;) {
      const ssize_t r = ::recv(fd, out.data() + got, n - got, 0);
      if (r <= 0) return false;
      got += static_cast<std::size_t>(r);
    }
    return true;
  }
  static bool send_all(int fd, const std::string& b) {
    for (std::size_t sent = 0; sent < b.size();) {
      const ssize_t r = ::send(fd, b.data() + sent, b.size() - sent, MSG_NOSIGNAL);
      if (r <= 0) return false;
      sent += static_cast<std::size_t>(r);
    }
    return true;
  }
  // A P-DATA-TF PDU of one PDV.
  static std::string pdata(std::uint8_t pcid, bool command, bool last, const std::string& fragment) {
    std::string b{"\x04\x00", 2};
    put32(b, static_cast<std::uint32_t>(fragment.size() + 6));
    put32(b, static_cast<std::uint32_t>(fragment.size() + 2));
    b += static_cast<char>(pcid);
    b += static_cast<char>((command ? 1 : 0) | (last ? 2 : 0));
    return b + fragment;
  }
  // An element of a command set: implicit VR little endian.
  static std::string element(std::uint16_t elem, const std::string& value) {
    std::string b{"\x00\x00", 2};
    b += static_cast<char>(elem & 0xFF), b += static_cast<char>(elem >> 8);
    const auto n = static_cast<std::uint32_t>(value.size());
    for (int s = 0; s < 32; s += 8) b += static_cast<char>((n >> s) & 0xFF);
    return b + value;
  }
  static std::string us(std::uint16_t v) { return std::string{static_cast<char>(v & 0xFF), static_cast<char>(v >> 8)}; }
  // The A-ASSOCIATE-AC for a request: every presentation context accepted with its first transfer syntax.
  static std::string accept(const std::string& rq) {
    std::string items;
    for (std::size_t at = 68; at + 4 <= rq.size();) {
      const auto type = static_cast<unsigned char>(rq[at]);
      const std::size_t len = get16(rq, at + 2);
      const std::string item = rq.substr(at, 4 + len);
      if (type == 0x10) items += item;
      if (type == 0x20) {
        std::string ts;
        for (std::size_t sub = 8; sub + 4 <= item.size();) {
          const std::size_t sl = get16(item, sub + 2);
          if (static_cast<unsigned char>(item[sub]) == 0x40 && ts.empty()) ts = item.substr(sub, 4 + sl);
          sub += 4 + sl;
        }
        std::string ac{"\x21\x00", 2};
        put16(ac, static_cast<std::uint16_t>(4 + ts.size()));
        ac += item[4];
        ac += std::string("\x00\x00\x00", 3);
        items += ac + ts;
      }
      at += 4 + len;
    }
    const std::string uid = "1.2.826.0.1.3680043.9.7777.1";
    std::string user{"\x51\x00\x00\x04", 4};
    put32(user, 65536);
    user += std::string{"\x52\x00", 2};
    put16(user, static_cast<std::uint16_t>(uid.size()));
    user += uid;
    items += std::string{"\x50\x00", 2};
    put16(items, static_cast<std::uint16_t>(user.size()));
    items += user;
    std::string ac{"\x02\x00", 2};
    put32(ac, static_cast<std::uint32_t>(68 + items.size()));
    return ac + rq.substr(0, 68) + items;  // version, AE titles and the reserved bytes as requested
  }
  void serve() {
    const int fd = ::accept(listen_fd_, nullptr, nullptr);
    if (fd < 0) return;
    timeval tv{60, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::uint16_t message_id = 0;
    std::uint8_t pcid = 0;
    std::string header, body;
    while (read_exactly(fd, header, 6) && read_exactly(fd, body, get32(header, 2))) {
      const auto type = static_cast<unsigned char>(header[0]);
      if (type == 0x01 && !send_all(fd, accept(body))) break;
      if (type == 0x05) send_all(fd, std::string("\x06\x00\x00\x00\x00\x04\x00\x00\x00\x00", 10));
      if (type == 0x07 || type == 0x05) break;
      if (type != 0x04) continue;
      for (std::size_t at = 0; at + 6 <= body.size();) {
        const std::size_t len = get32(body, at);
        const auto control = static_cast<unsigned char>(body[at + 5]);
        const std::string fragment = body.substr(at + 6, len - 2);
        if (control & 1) {  // the C-GET request's command: its Message ID (0000,0110)
          pcid = static_cast<std::uint8_t>(body[at + 4]);
          for (std::size_t e = 0; e + 8 <= fragment.size();) {
            const std::uint32_t vl = static_cast<unsigned char>(fragment[e + 4]) | static_cast<unsigned char>(fragment[e + 5]) << 8;
            if (fragment[e + 2] == 0x10 && fragment[e + 3] == 0x01 && vl == 2) {
              message_id = static_cast<std::uint16_t>(static_cast<unsigned char>(fragment[e + 8]) | static_cast<unsigned char>(fragment[e + 9]) << 8);
            }
            e += 8 + vl;
          }
        } else if (control & 2) {  // the identifier's last fragment: answer
          send_answer(fd, pcid, message_id);
        }
        at += 4 + len;
      }
    }
    ::close(fd);
  }
  void send_answer(int fd, std::uint8_t pcid, std::uint16_t message_id) {
    sent_answer = true;  // before it is sent: the retrieve may give up (and the test check) while the rest is still being written
    std::string uid = UID_GETStudyRootQueryRetrieveInformationModel;
    if (uid.size() % 2 != 0) uid += '\0';
    const bool other = answer_ == Answer::ResponseToAnotherRequest;
    const std::string pending = element(0x0002, uid) + element(0x0100, us(0x8010)) + element(0x0120, us(other ? message_id + 7 : message_id)) +
                                element(0x0800, us(answer_ == Answer::HugeIdentifier ? 0x0000 : 0x0101)) + element(0x0900, us(0xFF00));
    if (answer_ == Answer::EndlessCommand) {
      for (int i = 0; i < 140; ++i) send_all(fd, pdata(pcid, true, false, std::string(32 * 1024, '\0')));  // 4.4 MiB
    } else {
      send_all(fd, pdata(pcid, true, true, pending));
      if (answer_ == Answer::HugeIdentifier) {
        for (int i = 0; i < 200; ++i) send_all(fd, pdata(pcid, false, false, std::string(32 * 1024, '\0')));  // 6.25 MiB
      }
    }
  }
  Answer answer_;
  int listen_fd_ = -1;
  std::thread thread_;
};

TEST_F(NetworkTest, RetrieveStopsAtOnceWhenAPacsAnswersBeyondWhatACommandCanBe) {
  const struct {
    HostilePacs::Answer answer;
    const char* reason;
  } cases[] = {
      {HostilePacs::Answer::EndlessCommand, "a command larger than 4210688 bytes"},
      {HostilePacs::Answer::HugeIdentifier, "a data set larger than 4194304 bytes where an identifier was expected"},
      {HostilePacs::Answer::ResponseToAnotherRequest, "a C-GET response to another request"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.reason);
    HostilePacs pacs(c.answer);
    net::ScuOptions scu;
    scu.peer = {"HOSTILE", "127.0.0.1", pacs.port};
    scu.limits.dimse_timeout_seconds = 30;
    fs::create_directories(path("incoming"));
    const auto start = std::chrono::steady_clock::now();
    auto got = net::get_studies(scu, {"1.2.826.0.1.3680043.9.7777.5"}, path("incoming"),
                                [](const net::ReceivedInstance&) { return net::StoreVerdict{}; });
    const double seconds = seconds_since(start);
    EXPECT_TRUE(pacs.sent_answer);
    ASSERT_FALSE(got.ok());
    EXPECT_EQ(got.error().kind, dicom::ErrorKind::Network) << got.error().message;
    EXPECT_NE(got.error().message.find(c.reason), std::string::npos) << got.error().message;
    // Refused as it arrived, not after the 30 s DIMSE timeout.
    EXPECT_LT(seconds, 20.0) << got.error().message;
  }
}

// C-GET is bounded: a PACS cannot fill the disk. Past the retrieve's limit the instance is
// refused, the C-GET stopped with an error that names the limit, and what came before is kept.
TEST_F(ReportTest, RetrieveStopsAtItsSizeLimitAndKeepsWhatCameBefore) {
  Orthanc orthanc(path("orthanc"), free_port());
  ASSERT_TRUE(orthanc.ready) << orthanc.log();
  const std::string study = "1.2.826.0.1.3680043.9.7777.2";
  for (const char* f : {"big-a.dcm", "big-b.dcm", "big-c.dcm"}) {
    write_phantom(path(f), "BIG-1", study, 1024, 1024);  // 2 MiB of pixels each
    auto [rc, out] = orthanc.store(path(f));
    ASSERT_EQ(rc, 0) << out;
  }
  auto catalog = open_catalog();
  net::ScuOptions scu = orthanc.scu();
  scu.limits.max_retrieve_bytes = (std::uint64_t{3} << 20);  // room for one instance, not two
  auto got = app::retrieve(catalog, scu, {study}, {}, {}, {}, nullptr);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.error().kind, app::ErrorKind::Invalid) << got.error().message;  // a refusal, not a broken network
  EXPECT_NE(got.error().message.find("limit of 3,145,728 bytes"), std::string::npos) << got.error().message;
  EXPECT_NE(got.error().message.find("1 instances kept"), std::string::npos) << got.error().message;
  const auto instances = catalog.list_instances().value();
  ASSERT_EQ(instances.size(), 1U);
  EXPECT_TRUE(fs::exists(instances[0].stored_path));
  // Nothing half-received anywhere under the test's folder (the incoming folders included).
  for (const auto& e : fs::recursive_directory_iterator(dir_)) {
    if (e.is_regular_file() && e.path().string().find(".incoming") != std::string::npos) ADD_FAILURE() << "left behind: " << e.path();
  }

  // With the limit high enough, the whole study; the CLI's option says the same in MiB.
  const std::string peer = "ORTHANC@127.0.0.1:" + std::to_string(orthanc.dicom_port);
  auto [lrc, lout] = run({HILUM_CLI, "--db", path("cli.db").string(), "pacs", "retrieve", "--peer", peer, "--aet", "HILUM",
                          "--max-total-mb", "3", study},
                         path("cli-get-limit.log"));
  EXPECT_NE(lrc, 0) << lout;
  EXPECT_NE(lout.find("limit of 3,145,728 bytes"), std::string::npos) << lout;
  auto [arc, aout] = run({HILUM_CLI, "--db", path("cli.db").string(), "pacs", "retrieve", "--peer", peer, "--aet", "HILUM",
                          "--max-total-mb", "16", study},
                         path("cli-get-all.log"));
  EXPECT_EQ(arc, 0) << aout;
  EXPECT_NE(aout.find("retrieved 3 instances"), std::string::npos) << aout;
}

// Runs a program under a small python3 parent that reports its peak resident memory (KiB), so
// that the test process's own memory (a fork's copy) does not count: exit status and peak.
std::pair<int, long> run_measured(const std::vector<std::string>& argv, const fs::path& log, const fs::path& report) {
  std::vector<std::string> full = {"/usr/bin/python3", "-c",
                                   "import resource, subprocess, sys\n"
                                   "with open(sys.argv[1], 'w') as log:\n"
                                   "    rc = subprocess.call(sys.argv[2:], stdout=log, stderr=subprocess.STDOUT)\n"
                                   "print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n",
                                   log.string()};
  full.insert(full.end(), argv.begin(), argv.end());
  auto [rc, out] = run(full, report);
  int child_rc = -1;
  long peak = -1;
  std::istringstream in(out);
  if (rc != 0 || !(in >> child_rc >> peak)) return {-1, -1};
  return {child_rc, peak};
}

// C-GET streams each instance to a file of ours as it arrives: an instance above the per-instance
// cap is read, dropped and refused (A700) without the process ever holding it, the retrieve goes
// on with the others, and nothing is left behind.
TEST_F(ReportTest, RetrieveRefusesAnInstanceAboveItsCapWithoutHoldingIt) {
  Orthanc orthanc(path("orthanc"), free_port());
  ASSERT_TRUE(orthanc.ready) << orthanc.log();
  const std::string huge_study = "1.2.826.0.1.3680043.9.7777.3";
  const std::string small_study = "1.2.826.0.1.3680043.9.7777.4";
  write_phantom(path("huge.dcm"), "CAP-1", huge_study, 2048, 4096);  // 16 MiB of pixels
  write_phantom(path("small.dcm"), "CAP-1", small_study);
  for (const char* f : {"huge.dcm", "small.dcm"}) {
    auto [rc, out] = orthanc.store(path(f));
    ASSERT_EQ(rc, 0) << out;
  }
  // The large instance refused (the PACS counts a failed sub-operation), the next study retrieved.
  auto catalog = open_catalog();
  net::ScuOptions scu = orthanc.scu();
  scu.limits.max_dataset_bytes = std::uint64_t{2} << 20;
  std::vector<net::RetrieveProgress> progress;
  auto got = app::retrieve(catalog, scu, {huge_study, small_study}, {}, {}, [&](const net::RetrieveProgress& p) { progress.push_back(p); },
                           nullptr);
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(got->received, 1U);
  EXPECT_EQ(got->refused, 1U);
  const auto last_of = [&](const std::string& study) {
    net::RetrieveProgress last;
    for (const auto& p : progress) {
      if (p.study_instance_uid == study) last = p;
    }
    return last;
  };
  EXPECT_EQ(last_of(huge_study).failed, 1) << "the PACS did not get a failure status for the instance above the cap";
  EXPECT_EQ(last_of(small_study).completed, 1);
  EXPECT_EQ(catalog.count_instances().value(), 1);
  for (const auto& e : fs::recursive_directory_iterator(dir_)) {
    if (e.is_regular_file() && e.path().string().find(".incoming") != std::string::npos) ADD_FAILURE() << "left behind: " << e.path();
  }

  // The CLI, in processes of their own: the peak memory of retrieving the large instance (refused)
  // is that of a retrieve that brings nothing (an unknown study, which the PACS refuses: the same
  // process, catalog and association, no instance).
  const std::string peer = "ORTHANC@127.0.0.1:" + std::to_string(orthanc.dicom_port);
  auto retrieve = [&](const std::string& db, const std::string& uid, const std::string& log) {
    return run_measured({HILUM_CLI, "--db", path(db).string(), "pacs", "retrieve", "--peer", peer, "--aet", "HILUM", "--max-size-mb", "2", uid},
                        path(log), path(log + ".peak"));
  };
  const long baseline = retrieve("nothing.db", "1.2.826.0.1.3680043.9.7777.999", "cli-nothing.log").second;
  const auto [rc, peak] = retrieve("capped.db", huge_study, "cli-capped.log");
  std::ifstream in(path("cli-capped.log"));
  std::stringstream out;
  out << in.rdbuf();
  EXPECT_EQ(rc, 0) << out.str();
  EXPECT_NE(out.str().find("retrieved 0 instances (1 not kept)"), std::string::npos) << out.str();
  ASSERT_GT(baseline, 0);
  std::printf("peak resident memory: %ld KiB retrieving nothing, %ld KiB retrieving the 16 MiB instance (refused)\n", baseline, peak);
  EXPECT_LT(peak - baseline, 8 * 1024) << "peak " << peak << " KiB against " << baseline << " KiB without the 16 MiB instance";
}

// ---- TLS (dcmtls): a throwaway CA and certificates made with openssl for each test.

class TlsTest : public ReportTest {
 protected:
  void SetUp() override {
    ReportTest::SetUp();
    // Two CAs: ours, which signs the listener's, the client's and storescp's certificates, and a
    // rogue one that signs a client nobody trusts. EC P-256 keys: quick to make.
    const std::string dir = path("pki").string();
    fs::create_directories(dir);
    std::string script = "set -e; cd '" + dir + "'; ec='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes';";
    for (const char* ca : {"ca", "rogue-ca"}) {
      script += std::string(" openssl req -x509 $ec -keyout ") + ca + ".key -out " + ca + ".pem -days 2 -subj /CN=" + ca + " 2>/dev/null;";
    }
    for (const auto& [name, ca] : std::vector<std::pair<std::string, std::string>>{{"server", "ca"}, {"client", "ca"}, {"rogue", "rogue-ca"}}) {
      script += " openssl req -new $ec -keyout " + name + ".key -out " + name + ".csr -subj /CN=" + name + " 2>/dev/null;" +
                " openssl x509 -req -in " + name + ".csr -CA " + ca + ".pem -CAkey " + ca + ".key -CAcreateserial -days 2 -out " +
                name + ".pem 2>/dev/null;";
    }
    auto [rc, out] = run({"/bin/sh", "-c", script}, path("openssl.log"));
    ASSERT_EQ(rc, 0) << out;
  }
  std::string pki(const std::string& file) { return path("pki/" + file).string(); }
  // The listener's TLS: its key and certificate, peers' certificates signed by our CA.
  net::TlsOptions listener_tls() {
    net::TlsOptions t;
    t.key = pki("server.key");
    t.certificate = pki("server.pem");
    t.ca = {pki("ca.pem")};
    return t;
  }
  // storescu over TLS with a client key/certificate, trusting our CA.
  std::pair<int, std::string> storescu_tls(const std::string& client, int port, const fs::path& file) {
    return run({HILUM_STORESCU, "+tls", pki(client + ".key"), pki(client + ".pem"), "+cf", pki("ca.pem"), "-aet", "STORESCU", "-aec",
                "HILUM", "127.0.0.1", std::to_string(port), file.string()},
               path("storescu-tls-" + std::to_string(counter_++) + ".log"));
  }
};

TEST_F(TlsTest, StorescuOverTlsIsCatalogued) {
  auto catalog = open_catalog();
  const int port = free_port();
  write_phantom(path("dx.dcm"), "TLS-1");
  Listener listener(catalog, path("store"), port, {{"STORESCU", "127.0.0.1"}}, std::nullopt, listener_tls());
  ASSERT_TRUE(listener.has(net::EventKind::Listening, "(TLS)")) << listener.event_text();
  auto [rc, out] = storescu_tls("client", port, path("dx.dcm"));
  EXPECT_EQ(rc, 0) << out;
  ASSERT_TRUE(listener.wait_for([&] { return listener.arrivals.size() >= 1; })) << listener.event_text();
  EXPECT_EQ(listener.arrivals[0].filed.outcome, app::ReceivedFile::Outcome::Imported) << listener.arrivals[0].filed.reason;
  EXPECT_EQ(catalog.count_instances().value(), 1);
}

// A TLS listener: a peer that connects and never sends its ClientHello does not hold it.
TEST_F(TlsTest, PeerThatNeverStartsTheHandshakeDoesNotHoldTheListener) {
  auto catalog = open_catalog();
  const int port = free_port();
  write_phantom(path("dx.dcm"), "TLS-STALL");
  Listener listener(catalog, path("store"), port, {{"STORESCU", "127.0.0.1"}}, short_acse(), listener_tls());
  StalledPeer silent(port);
  ASSERT_TRUE(silent.connected);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const auto start = std::chrono::steady_clock::now();
  auto [rc, out] = storescu_tls("client", port, path("dx.dcm"));
  EXPECT_EQ(rc, 0) << out;
  EXPECT_LT(seconds_since(start), 3.0) << "the TLS C-STORE waited for the stalled connection";
  EXPECT_FALSE(silent.closed_by_listener());
  ASSERT_TRUE(listener.wait_for([&] { return listener.arrivals.size() >= 1; })) << listener.event_text();
  expect_closed_after_the_acse_timeout(silent, listener);
}

// Several TLS peers at once (each connection's handshake on its own thread, its SSL object made
// from the listener's one TLS layer) while a peer that never starts its handshake waits.
TEST_F(TlsTest, ConcurrentTlsPeersAreServedWhileOneStalls) {
  auto catalog = open_catalog();
  const int port = free_port();
  constexpr int kPeers = 4;
  for (int i = 0; i < kPeers; ++i) write_phantom(path("dx-" + std::to_string(i) + ".dcm"), "TLS-CONC-" + std::to_string(i));
  net::Limits limits = short_acse();
  limits.max_associations = 8;
  Listener listener(catalog, path("store"), port, {{"STORESCU", "127.0.0.1"}}, limits, listener_tls());
  StalledPeer silent(port);
  ASSERT_TRUE(silent.connected);
  std::vector<std::pair<pid_t, fs::path>> peers;
  for (int i = 0; i < kPeers; ++i) {
    const fs::path log = path("storescu-tls-" + std::to_string(i) + ".log");
    peers.emplace_back(spawn({HILUM_STORESCU, "+tls", pki("client.key"), pki("client.pem"), "+cf", pki("ca.pem"), "-aet", "STORESCU",
                              "-aec", "HILUM", "127.0.0.1", std::to_string(port), path("dx-" + std::to_string(i) + ".dcm").string()},
                             log),
                       log);
  }
  for (const auto& [pid, log] : peers) {
    const int rc = wait_exit(pid);
    std::stringstream text;
    text << std::ifstream(log).rdbuf();
    EXPECT_EQ(rc, 0) << log << ": " << text.str() << listener.event_text();
  }
  ASSERT_TRUE(listener.wait_for([&] { return listener.arrivals.size() >= std::size_t{kPeers}; })) << listener.event_text();
  EXPECT_EQ(catalog.count_instances().value(), kPeers);
  EXPECT_FALSE(silent.closed_by_listener()) << "closed before its timeout";
  listener.stop();
  EXPECT_EQ(dcmExternalSocketHandle.get(), DCMNET_INVALID_SOCKET);
}

TEST_F(TlsTest, PlainStorescuIsRefusedByATlsListener) {
  auto catalog = open_catalog();
  const int port = free_port();
  write_phantom(path("dx.dcm"), "TLS-2");
  Listener listener(catalog, path("store"), port, {{"STORESCU", "127.0.0.1"}}, std::nullopt, listener_tls());
  auto [rc, out] = storescu("STORESCU", port, path("dx.dcm"));
  EXPECT_NE(rc, 0) << out;
  EXPECT_TRUE(listener.wait_for([&] { return listener.has(net::EventKind::Error, "TLS handshake"); })) << listener.event_text();
  EXPECT_FALSE(listener.has(net::EventKind::AssociationAccepted));
  EXPECT_EQ(catalog.count_instances().value(), 0);
  EXPECT_EQ(files_below(path("store"), ".dcm"), 0U);
}

TEST_F(TlsTest, ClientCertificateNotSignedByTheTrustedCaIsRefused) {
  auto catalog = open_catalog();
  const int port = free_port();
  write_phantom(path("dx.dcm"), "TLS-3");
  Listener listener(catalog, path("store"), port, {{"STORESCU", "127.0.0.1"}}, std::nullopt, listener_tls());
  auto [rc, out] = storescu_tls("rogue", port, path("dx.dcm"));
  EXPECT_NE(rc, 0) << out;
  EXPECT_TRUE(listener.wait_for([&] { return listener.has(net::EventKind::Error, "TLS handshake"); })) << listener.event_text();
  EXPECT_FALSE(listener.has(net::EventKind::AssociationAccepted));
  // Nor does a client without a certificate get in (+tla: anonymous TLS).
  auto [arc, aout] = run({HILUM_STORESCU, "+tla", "+cf", pki("ca.pem"), "-aet", "STORESCU", "-aec", "HILUM", "127.0.0.1",
                          std::to_string(port), path("dx.dcm").string()},
                         path("storescu-anonymous.log"));
  EXPECT_NE(arc, 0) << aout;
  EXPECT_EQ(catalog.count_instances().value(), 0);
  EXPECT_EQ(files_below(path("store"), ".dcm"), 0U);
}

TEST_F(TlsTest, PinnedPeerCertificateIsTheOnlyOneAccepted) {
  auto catalog = open_catalog();
  const int port = free_port();
  write_phantom(path("dx.dcm"), "TLS-4");
  net::TlsOptions tls = listener_tls();
  tls.ca.clear();
  tls.peer_certificates = {pki("client.pem")};  // its CA is not trusted: the certificate itself is
  Listener listener(catalog, path("store"), port, {{"STORESCU", "127.0.0.1"}}, std::nullopt, tls);
  auto [rc, out] = storescu_tls("client", port, path("dx.dcm"));
  EXPECT_EQ(rc, 0) << out;
  ASSERT_TRUE(listener.wait_for([&] { return listener.arrivals.size() >= 1; })) << listener.event_text();
  write_phantom(path("dx2.dcm"), "TLS-4");
  auto [rrc, rout] = storescu_tls("rogue", port, path("dx2.dcm"));
  EXPECT_NE(rrc, 0) << rout;
  EXPECT_EQ(catalog.count_instances().value(), 1);
}

TEST_F(TlsTest, TlsOptionsThatCannotVerifyAnythingAreRefused) {
  net::ScuOptions o;
  o.peer = {"ANY", "127.0.0.1", free_port()};
  o.tls.key = pki("client.key");
  o.tls.certificate = pki("client.pem");  // no CA, no pinned certificate, verification not turned off
  auto r = net::echo(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, dicom::ErrorKind::Refused);
  EXPECT_NE(r.error().message.find("verify the peer"), std::string::npos) << r.error().message;
  o.tls.ca = {pki("ca.pem")};
  o.tls.certificate = pki("server.pem");  // not the key's certificate
  r = net::echo(o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("does not match"), std::string::npos) << r.error().message;
  auto [rc, out] = run({HILUM_CLI, "pacs", "echo", "--peer", "ANY@127.0.0.1:104", "--tls-key", pki("client.key")}, path("cli-half.log"));
  EXPECT_EQ(rc, 2) << out;  // a key without its certificate: usage
  auto [lrc, lout] = run({HILUM_CLI, "--db", path("l.db").string(), "listen", "--port", "104", "--tls-ca", pki("ca.pem")},
                         path("cli-listen-no-key.log"));
  EXPECT_EQ(lrc, 2) << lout;  // a TLS listener without its key and certificate
}

TEST_F(TlsTest, CliEchoAndSendOverTlsToStorescp) {
  const int port = free_port();
  fs::create_directories(path("storescp"));
  const pid_t scp = spawn({HILUM_STORESCP, "+tls", pki("server.key"), pki("server.pem"), "+cf", pki("ca.pem"), "-aet", "STORESCP",
                           "--output-directory", path("storescp").string(), std::to_string(port)},
                          path("storescp.log"));
  const std::string peer = "STORESCP@127.0.0.1:" + std::to_string(port);
  const std::vector<std::string> tls = {"--tls-key", pki("client.key"), "--tls-cert", pki("client.pem"), "--tls-ca", pki("ca.pem")};
  auto cli = [&](std::vector<std::string> argv, const std::string& log) {
    argv.insert(argv.end(), tls.begin(), tls.end());
    return run(argv, path(log));
  };
  std::pair<int, std::string> echo{1, ""};
  for (int i = 0; i < 50 && echo.first != 0; ++i) {  // until storescp listens
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    echo = cli({HILUM_CLI, "pacs", "echo", "--peer", peer}, "cli-echo.log");
  }
  EXPECT_EQ(echo.first, 0) << echo.second;
  EXPECT_NE(echo.second.find("C-ECHO " + peer + ": ok"), std::string::npos) << echo.second;
  // Without TLS, storescp (TLS only) does not answer.
  auto [prc, pout] = run({HILUM_CLI, "pacs", "echo", "--peer", peer}, path("cli-echo-plain.log"));
  EXPECT_NE(prc, 0) << pout;
  // A server whose certificate our trusted CA did not sign is not talked to.
  auto [rrc, rout] = run({HILUM_CLI, "pacs", "echo", "--peer", peer, "--tls-key", pki("client.key"), "--tls-cert", pki("client.pem"),
                          "--tls-ca", pki("rogue-ca.pem")},
                         path("cli-echo-rogue.log"));
  EXPECT_NE(rrc, 0) << rout;
  // pacs send: an image's structured report over TLS.
  const std::string db = path("send.db").string();
  {
    auto c = app::Catalog::open(db);
    ASSERT_TRUE(c.ok());
    catalogue_labelled_image(*c);
  }
  auto [src, sout] = cli({HILUM_CLI, "--db", db, "pacs", "send", "--peer", peer, "--all", "--no-maps"}, "cli-send.log");
  EXPECT_EQ(src, 0) << sout;
  EXPECT_NE(sout.find("sent 1 objects"), std::string::npos) << sout;
  ::kill(scp, SIGTERM);
  wait_exit(scp);
  EXPECT_EQ(files_below(path("storescp")), 1U);
  std::size_t sr = 0;
  for (const auto& e : fs::directory_iterator(path("storescp"))) sr += e.path().filename().string().rfind("SR", 0) == 0 ? 1 : 0;
  EXPECT_EQ(sr, 1U) << "storescp names a structured report SR.<uid>";
}

}  // namespace
