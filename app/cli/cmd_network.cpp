// hilum-cli listen / pacs: the hospital network (Storage SCP; echo, find, retrieve, send as SCU).
#include <cstdio>
#include <iostream>
#include <mutex>
#include <optional>
#include <string>

#include "commands.hpp"
#include "hilum/app/classify.hpp"
#include "hilum/app/json.hpp"
#include "hilum/app/network.hpp"
#include "hilum/app/sr_export.hpp"
#include "hilum/inference/vit.hpp"

namespace hilum::cli {
namespace {

namespace net = dicom::net;
using app::JsonObject;

int network_error(const std::string& command, const app::Error& e) {
  std::fprintf(stderr, "hilum-cli: %s: %s\n", command.c_str(), e.message.c_str());
  if (e.kind == app::ErrorKind::Interrupted) return kExitInterrupted;
  if (e.kind == app::ErrorKind::Invalid) return kExitFailures;
  return kExitFailures;
}

// Parses the options every network command shares; false (after printing) on a bad one.
struct NetArgs {
  std::optional<net::Peer> peer;
  std::string our_ae = "HILUM";
  net::TlsOptions tls;
  Args rest;
};

std::optional<int> parse_common(const std::string& command, const Args& args, NetArgs& out, bool need_peer) {
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--peer") {
      if (i + 1 >= args.size()) return usage_error(command + ": --peer needs AET@HOST:PORT");
      auto p = net::parse_peer(args[++i]);
      if (!p) return usage_error(command + ": " + p.error().message);
      out.peer = *p;
    } else if (a == "--aet") {
      if (i + 1 >= args.size()) return usage_error(command + ": --aet needs an AE title");
      out.our_ae = args[++i];
      if (!net::valid_ae_title(out.our_ae)) return usage_error(command + ": not a valid AE title: '" + out.our_ae + "'");
    } else if (a == "--tls-key" || a == "--tls-cert" || a == "--tls-ca" || a == "--tls-peer-cert") {
      if (i + 1 >= args.size()) return usage_error(command + ": " + a + " needs a file");
      const std::filesystem::path file = args[++i];
      if (a == "--tls-key") out.tls.key = file;
      else if (a == "--tls-cert") out.tls.certificate = file;
      else if (a == "--tls-ca") out.tls.ca.push_back(file);
      else out.tls.peer_certificates.push_back(file);
    } else if (a == "--tls-no-verify") {
      out.tls.verify_peer = false;
    } else {
      out.rest.push_back(a);
    }
  }
  if (need_peer && !out.peer) return usage_error(command + ": no peer (--peer AET@HOST:PORT)");
  if (auto problem = net::tls_problem(out.tls, command == "listen")) return usage_error(command + ": " + *problem);
  return std::nullopt;
}

net::ScuOptions scu_options(const NetArgs& n) {
  net::ScuOptions o;
  o.peer = *n.peer;
  o.our_ae = n.our_ae;
  o.tls = n.tls;
  return o;
}

std::string arrival_line(const app::Arrival& a) {
  std::string line = std::string(app::to_string(a.filed.outcome)) + " " + a.filed.sop_instance_uid;
  if (a.filed.sop_instance_uid.empty()) line += a.instance.sop_instance_uid;
  line += " from " + a.instance.calling_ae + "@" + a.instance.peer_host;
  if (!a.filed.reason.empty()) line += ": " + a.filed.reason;
  return line;
}

int cmd_pacs_echo(const NetArgs& n) {
  auto r = net::echo(scu_options(n));
  if (!r) return network_error("pacs echo", app::from_dicom(r.error()));
  std::printf("C-ECHO %s: ok\n", net::to_string(*n.peer).c_str());
  return kExitOk;
}

int cmd_pacs_find(const NetArgs& n) {
  net::StudyQuery q;
  bool json = false;
  const Args& a = n.rest;
  for (std::size_t i = 0; i < a.size(); ++i) {
    auto value = [&](std::string& into) -> bool {
      if (i + 1 >= a.size()) return false;
      into = a[++i];
      return true;
    };
    bool ok = true;
    if (a[i] == "--patient-id") ok = value(q.patient_id);
    else if (a[i] == "--patient-name") ok = value(q.patient_name);
    else if (a[i] == "--accession") ok = value(q.accession_number);
    else if (a[i] == "--modality") ok = value(q.modality);
    else if (a[i] == "--from") ok = value(q.date_from);
    else if (a[i] == "--to") ok = value(q.date_to);
    else if (a[i] == "--json") json = true;
    else return usage_error("pacs find: unknown argument '" + a[i] + "'");
    if (!ok) return usage_error("pacs find: " + a[i] + " needs a value");
  }
  for (const std::string* d : {&q.date_from, &q.date_to}) {
    if (!d->empty() && (d->size() != 8 || d->find_first_not_of("0123456789") != std::string::npos)) {
      return usage_error("pacs find: dates are YYYYMMDD, not '" + *d + "'");
    }
  }
  const InterruptGuard guard;
  auto r = net::find_studies(scu_options(n), q, InterruptGuard::flag());
  if (!r) return network_error("pacs find", app::from_dicom(r.error()));
  for (const auto& m : *r) {
    if (json) {
      JsonObject o;
      o.add("study_instance_uid", m.study_instance_uid);
      o.add("patient_id", m.patient_id);
      o.add("patient_name", m.patient_name);
      o.add("study_date", m.study_date);
      o.add("study_time", m.study_time);
      o.add("accession_number", m.accession_number);
      o.add("study_description", m.study_description);
      o.add("modalities", m.modalities);
      o.add("series", m.series);
      o.add("instances", m.instances);
      std::cout << o.str() << '\n';
    } else {
      std::cout << m.study_instance_uid << "  " << m.patient_id << "  " << m.patient_name << "  " << m.study_date << "  "
                << m.accession_number << "  " << m.modalities << "  " << m.study_description << '\n';
    }
  }
  if (!json) std::cout << r->size() << " studies\n";
  std::cout.flush();
  return kExitOk;
}

int cmd_pacs_retrieve(const Global& global, const NetArgs& n) {
  std::vector<std::string> studies;
  net::ScuOptions scu = scu_options(n);
  for (std::size_t i = 0; i < n.rest.size(); ++i) {
    const std::string& a = n.rest[i];
    if (a == "--max-total-mb") {
      const auto v = i + 1 < n.rest.size() ? parse_number<std::uint64_t>(n.rest[++i]) : std::nullopt;
      if (!v || *v < 1 || *v > (std::uint64_t{1} << 24)) return usage_error("pacs retrieve: --max-total-mb is 1 to 16777216");
      scu.limits.max_retrieve_bytes = *v << 20;
      continue;
    }
    if (a == "--max-size-mb") {
      const auto v = i + 1 < n.rest.size() ? parse_number<std::uint64_t>(n.rest[++i]) : std::nullopt;
      if (!v || *v < 1 || *v > 65536) return usage_error("pacs retrieve: --max-size-mb is 1 to 65536");
      scu.limits.max_dataset_bytes = *v << 20;
      continue;
    }
    if (a.rfind("--", 0) == 0) return usage_error("pacs retrieve: unknown argument '" + a + "'");
    studies.push_back(a);
  }
  if (studies.empty()) return usage_error("pacs retrieve: no STUDY_UID");
  auto catalog = open_catalog(global, app::Catalog::Mode::ReadWriteCreate);
  if (!catalog) return kExitCatalog;
  const InterruptGuard guard;
  std::size_t problems = 0;
  auto on_arrival = [&](const app::Arrival& a) {
    // A study's non-image instances (reports, presentation states) are left out, not a problem.
    if (a.filed.outcome == app::ReceivedFile::Outcome::Conflict || a.filed.outcome == app::ReceivedFile::Outcome::Failed) ++problems;
    std::printf("%s\n", arrival_line(a).c_str());
    std::fflush(stdout);
  };
  auto progress = [](const net::RetrieveProgress& p) {
    std::fprintf(stderr, "\rretrieve %s: %d done, %d to go, %d failed", p.study_instance_uid.c_str(), p.completed,
                 p.remaining < 0 ? 0 : p.remaining, p.failed);
    if (p.remaining == 0) std::fputc('\n', stderr);
  };
  auto r = app::retrieve(*catalog, scu, studies, {}, on_arrival, progress, InterruptGuard::flag());
  if (!r) return network_error("pacs retrieve", r.error());
  std::printf("retrieved %llu instances (%llu not kept)\n", static_cast<unsigned long long>(r->received),
              static_cast<unsigned long long>(r->refused));
  return problems == 0 ? kExitOk : kExitFailures;
}

int cmd_pacs_send(const Global& global, const NetArgs& n) {
  bool all = false;
  bool maps = true;
  std::vector<std::string> images;
  for (const auto& a : n.rest) {
    if (a == "--all") all = true;
    else if (a == "--no-maps") maps = false;
    else if (a.rfind("--", 0) == 0) return usage_error("pacs send: unknown argument '" + a + "'");
    else images.push_back(a);
  }
  if (all == !images.empty()) return usage_error("pacs send: --all or SOP Instance UIDs (one of the two)");
  auto catalog = open_catalog(global, app::Catalog::Mode::ReadWrite);
  if (!catalog) return kExitCatalog;
  const InterruptGuard guard;
  app::SrExportOptions what;
  what.images = images;
  what.attention_maps = maps;
  auto r = app::send_reports(*catalog, scu_options(n), what, InterruptGuard::flag());
  if (!r) return network_error("pacs send", r.error());
  for (const auto& f : r->failed) std::fprintf(stderr, "hilum-cli: pacs send: %s: %s\n", f.file.string().c_str(), f.reason.c_str());
  std::printf("sent %llu objects (structured reports and attention maps) to %s (%zu failed)\n", static_cast<unsigned long long>(r->sent),
              net::to_string(*n.peer).c_str(), r->failed.size());
  return r->failed.empty() ? kExitOk : kExitFailures;
}

}  // namespace

int cmd_listen(const Global& global, const Args& args) {
  NetArgs n;
  if (auto rc = parse_common("listen", args, n, false)) return *rc;
  app::ListenOptions options;
  options.scp.ae_title = n.our_ae;
  options.scp.tls = n.tls;
  bool have_port = false;
  const Args& a = n.rest;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i] == "--port") {
      if (i + 1 >= a.size()) return usage_error("listen: --port needs a number");
      const auto port = parse_number<int>(a[++i]);
      if (!port || *port < 1 || *port > 65535) return usage_error("listen: --port is 1 to 65535, not '" + a[i] + "'");
      options.scp.port = *port;
      have_port = true;
    } else if (a[i] == "--allow") {
      if (i + 1 >= a.size()) return usage_error("listen: --allow needs AET or AET@HOST");
      auto allowed = net::parse_allowed(a[++i]);
      if (!allowed) return usage_error("listen: " + allowed.error().message);
      options.scp.allow.push_back(*allowed);
    } else if (a[i] == "--max-associations") {
      const auto v = i + 1 < a.size() ? parse_number<int>(a[++i]) : std::nullopt;
      if (!v || *v < 1 || *v > 64) return usage_error("listen: --max-associations is 1 to 64");
      options.scp.limits.max_associations = *v;
    } else if (a[i] == "--max-size-mb") {
      const auto v = i + 1 < a.size() ? parse_number<std::uint64_t>(a[++i]) : std::nullopt;
      if (!v || *v < 1 || *v > 65536) return usage_error("listen: --max-size-mb is 1 to 65536");
      options.scp.limits.max_dataset_bytes = *v << 20;
    } else if (a[i] == "--timeout") {
      const auto v = i + 1 < a.size() ? parse_number<int>(a[++i]) : std::nullopt;
      if (!v || *v < 1 || *v > 3600) return usage_error("listen: --timeout is 1 to 3600 seconds");
      options.scp.limits.dimse_timeout_seconds = *v;
    } else if (a[i] == "--acse-timeout") {
      const auto v = i + 1 < a.size() ? parse_number<int>(a[++i]) : std::nullopt;
      if (!v || *v < 1 || *v > 600) return usage_error("listen: --acse-timeout is 1 to 600 seconds");
      options.scp.limits.acse_timeout_seconds = *v;
    } else {
      return usage_error("listen: unknown argument '" + a[i] + "'");
    }
  }
  if (!have_port) return usage_error("listen: no port (--port N)");
  if (options.scp.allow.empty()) std::fputs("hilum-cli: listen: no --allow given: every association will be rejected\n", stderr);
  auto catalog = open_catalog(global, app::Catalog::Mode::ReadWriteCreate);
  if (!catalog) return kExitCatalog;

  const InterruptGuard guard;
  std::mutex io;
  auto on_arrival = [&](const app::Arrival& arrival) {
    const std::lock_guard lock(io);
    std::printf("%s\n", arrival_line(arrival).c_str());
    std::fflush(stdout);
  };
  auto log = [&](const net::Event& e) {
    if (e.kind == net::EventKind::Progress || e.kind == net::EventKind::Stored) return;
    const std::lock_guard lock(io);
    std::fprintf(stderr, "hilum-cli: listen: %s%s%s: %s\n", net::to_string(e.kind), e.peer.empty() ? "" : " ",
                 e.peer.c_str(), e.message.c_str());
    std::fflush(stderr);
  };
  // Each received film's model input is cached from the pixels decoded to file it (model_input.hpp),
  // so that classifying it later decodes nothing. Only the input size is needed: the model's
  // configuration is read, not its weights (nothing is classified here).
  if (auto active = catalog->active_model(); active && active->has_value()) {
    if (auto config = inference::read_config((*active)->path); config) {
      options.import.model_input = app::input_size_of(*config);
    }
  }
  auto r = app::listen(*catalog, options, on_arrival, log, InterruptGuard::flag());
  if (!r) return network_error("listen", r.error());
  return kExitOk;
}

int cmd_pacs(const Global& global, const Args& args) {
  if (args.empty()) return usage_error("pacs: echo, find, retrieve or send");
  const std::string sub = args[0];
  NetArgs n;
  if (auto rc = parse_common("pacs " + sub, Args(args.begin() + 1, args.end()), n, true)) return *rc;
  if (sub == "echo") {
    if (!n.rest.empty()) return usage_error("pacs echo: unknown argument '" + n.rest[0] + "'");
    return cmd_pacs_echo(n);
  }
  if (sub == "find") return cmd_pacs_find(n);
  if (sub == "retrieve") return cmd_pacs_retrieve(global, n);
  if (sub == "send") return cmd_pacs_send(global, n);
  return usage_error("pacs: unknown sub-command '" + sub + "' (echo, find, retrieve, send)");
}

}  // namespace hilum::cli
