// Several processes labelling one catalog at once (issue 15): each of --processes children opens the
// catalog (a file: SQLite; postgresql://...: PostgreSQL) and adds --labels labels one at a time (each
// its own transaction, as the workstation saves them), readers mixed across processes. Prints one
// JSON line: labels per second, failures, and whether every label is there afterwards.
//   bench_catalog CATALOG [--processes 8] [--labels 2000] [--images 50]
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "hilum/app/catalog.hpp"
#include "hilum/core/numbers.hpp"

namespace app = hilum::app;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: bench_catalog CATALOG [--processes N] [--labels N] [--images N]\n");
    return 2;
  }
  const std::string where = argv[1];
  int processes = 8, labels = 2000, images = 50;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    const int v = std::atoi(argv[i + 1]);
    if (v <= 0) return 2;
    if (a == "--processes") processes = v;
    else if (a == "--labels") labels = v;
    else if (a == "--images") images = v;
    else return 2;
  }
  {
    auto c = app::Catalog::open(where);
    if (!c) {
      std::fprintf(stderr, "bench_catalog: %s\n", c.error().message.c_str());
      return 1;
    }
    std::vector<app::InstanceRecord> records;
    for (int k = 0; k < images; ++k) {
      app::InstanceRecord r;
      r.sop_instance_uid = "2.25.9." + std::to_string(k);
      r.path = "/bench/" + r.sop_instance_uid + ".dcm";
      r.content_hash = "h" + std::to_string(k);
      r.patient_id = "P" + std::to_string(k % 10);
      r.study_instance_uid = "2.25.8." + std::to_string(k);
      r.series_instance_uid = "2.25.7." + std::to_string(k);
      records.push_back(r);
    }
    if (auto put = c->put_instances(records); !put) {
      std::fprintf(stderr, "bench_catalog: %s\n", put.error().message.c_str());
      return 1;
    }
  }
  const char* findings[] = {"Effusion", "Mass", "Nodule", "Atelectasis", "Cardiomegaly", "Pneumonia"};
  const char* values[] = {"present", "absent", "uncertain"};
  const auto start = std::chrono::steady_clock::now();
  std::vector<pid_t> children;
  for (int p = 0; p < processes; ++p) {
    const pid_t pid = ::fork();
    if (pid < 0) return 1;
    if (pid == 0) {
      auto c = app::Catalog::open(where, app::Catalog::Mode::ReadWrite);
      if (!c) ::_exit(101);
      int failures = 0;
      for (int k = 0; k < labels; ++k) {
        app::LabelInput in;
        in.image = "2.25.9." + std::to_string((p * 7 + k) % images);
        in.finding = findings[k % 6];
        in.value = *app::parse_label_value(values[(p + k) % 3]);
        in.author = "reader" + std::to_string((p + k / 100) % 6);  // mixed readers across processes
        in.source = app::LabelSource::Cli;
        if (auto r = c->add_labels({in}); !r) {
          if (failures++ == 0) std::fprintf(stderr, "bench_catalog: process %d: %s\n", p, r.error().message.c_str());
        }
      }
      ::_exit(failures > 100 ? 100 : failures);
    }
    children.push_back(pid);
  }
  int failed = 0;
  for (const pid_t pid : children) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) failed += WIFEXITED(status) ? WEXITSTATUS(status) : 1;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  auto c = app::Catalog::open(where, app::Catalog::Mode::ReadWrite);
  if (!c) return 1;
  const auto history = c->label_history();
  const long long stored = history ? static_cast<long long>(history->size()) : -1;
  const long long expected = static_cast<long long>(processes) * labels;
  std::printf("{\"engine\":\"%s\",\"processes\":%d,\"labels_per_process\":%d,\"seconds\":%s,\"labels_per_second\":%s,"
              "\"failures\":%d,\"stored\":%lld,\"all_present\":%s}\n",
              c->handle() != nullptr ? "sqlite" : "postgresql", processes, labels, hilum::core::format_number(seconds, 4).c_str(),
              hilum::core::format_number(static_cast<double>(expected) / seconds, 4).c_str(), failed, stored,
              stored == expected && failed == 0 ? "true" : "false");
  return stored == expected && failed == 0 ? 0 : 1;
}
