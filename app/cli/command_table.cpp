#include "command_table.hpp"

#include <cstdio>

namespace hilum::cli {
namespace {

constexpr std::string_view kReading = "reading DICOM (no catalog)";
constexpr std::string_view kCatalog = "the catalog (--db PATH, else $HILUM_DB, else ~/.local/share/Hilum/hilum.db)";
constexpr std::string_view kClassifier = "the classifier (a Hugging Face ViT folder: config.json + model.safetensors)";
constexpr std::string_view kNetwork = "the hospital network (AE titles: 1-16 characters; peers as AET@HOST:PORT)";

constexpr std::size_t kWidth = 100;       // lines are wrapped to this many characters
constexpr std::size_t kHelpColumn = 26;   // where descriptions start

const OptionSpec kJson{"--json", "", "", "machine-readable output: one JSON object per line"};
const OptionSpec kPrecision{"--precision", "", "bf16|f32",
                            "arithmetic of the trained layers' products (bf16, the default: mixed precision when the CPU has AVX512_BF16)"};

// The options train and pretrain share, after their own; `init` says what --init starts from.
std::vector<OptionSpec> with_training_options(std::vector<OptionSpec> own, std::string_view init) {
  const std::vector<OptionSpec> shared{{"--arch", "", "vit-ti16|vit-ti16-d6|vit-s16", "the architecture"},
                                       {"--image-size", "", "N", "input side in pixels"},
                                       {"--epochs", "", "N", "passes over the images"},
                                       {"--batch", "", "N", "images per step"},
                                       {"--lr", "", "X", "learning rate [0, 1]"},
                                       {"--weight-decay", "", "X", "AdamW weight decay [0, 1]"},
                                       {"--warmup-epochs", "", "N", "epochs of learning-rate warm-up"},
                                       {"--seed", "", "N", "random seed (train: also chooses the validation patients)"},
                                       {"--init", "", "DIR", init},
                                       {"--max-images", "", "N", "use at most N images (0: all)"},
                                       kPrecision,
                                       kJson};
  own.insert(own.end(), shared.begin(), shared.end());
  return own;
}

std::vector<CommandSpec> make_table() {
  std::vector<CommandSpec> t;
  // ---- reading DICOM
  t.push_back({"info", kReading, "FILE...",
               "one JSON object per line per file (a DICOMDIR expands to its images); exit status 1 when any file failed",
               {{"--no-pixels", "", "", "read attributes only (no pixel decoding, no window)"}},
               {},
               [](const Global&, const Args& a) { return cmd_info(a); }});
  t.push_back({"render", kReading, "FILE", "8-bit display rendering after the full DICOM display pipeline",
               {{"--output", "-o", "OUT.png", "the PNG to write", true},
                {"--window", "", "C,W", "window centre and width in modality units"},
                {"--preset", "", "N", "the file's N-th window preset (1-based)"},
                {"--voi-lut", "", "N", "the file's N-th VOI LUT (1-based)"},
                {"--auto", "", "", "automatic (histogram) window, ignoring collimator borders"},
                {"--min-max", "", "", "window over the full range of modality values"},
                {"--invert", "", "", "invert on top of the file's polarity"},
                {"--max-size", "", "PIXELS", "shrink (area average) so that neither side exceeds PIXELS"}},
               {},
               [](const Global&, const Args& a) { return cmd_render(a); }});
  t.push_back({"dicomdir", kReading, "DICOMDIR", "list patients / studies / series / images of a DICOMDIR",
               {kJson},
               {},
               [](const Global&, const Args& a) { return cmd_dicomdir(a); }});

  // ---- the catalog
  t.push_back({"import", kCatalog, "PATH...",
               "import files, folders (recursive) and DICOMDIRs; resumes an interrupted import of the same paths",
               {{"--jobs", "-j", "N", "threads reading files (1..256)"},
                {"--copy", "", "", "copy the files into the catalog's store"},
                {"--no-classify", "", "", "do not classify the new images (else the active model does, as they are imported)"},
                kJson},
               {},
               cmd_import});
  t.push_back({"list", kCatalog, "", "what the catalog holds",
               {{"--studies", "", "", "one line per study"},
                {"--images", "", "", "one line per image (the default)"},
                {"--unlabeled", "--unlabelled", "", "only images without labels"},
                {"--labeled", "--labelled", "", "only images with labels"},
                kJson},
               {},
               cmd_list});
  t.push_back({"label", kCatalog, "[IMAGE]",
               "record labels of an IMAGE (a SOP Instance UID or a path in the catalog), or of many from a CSV (--from-csv); "
               "the reader is the OS user, and one command submits the reading",
               {{"--set", "", "FINDING=VALUE", "present, absent, uncertain or cleared; repeat for several findings"},
                {"--author", "", "NAME", "another reader whose labels the OS user enters on their behalf"},
                {"--region", "", "x,y,w,h", "a rectangle in image pixels for the present or uncertain findings"},
                {"--polygon", "", "x1,y1,x2,y2,x3,y3[,...]", "a polygon in image pixels instead of a rectangle"},
                {"--comment", "", "TEXT", "a free-text comment"},
                {"--model-version", "", "VERSION", "the model version shown when the label was set"},
                {"--probability", "", "P", "the probability that model showed"},
                {"--from-csv", "", "FILE", "labels from a CSV file (image, finding, value, ...) instead of IMAGE and --set"},
                kJson},
               {},
               cmd_label});
  t.push_back({"labels", kCatalog, "SUBCOMMAND", "the label vocabulary and the audit trail",
               {},
               {{"list", kCatalog, "", "the vocabulary", {kJson}, {}, nullptr},
                {"add", kCatalog, "NAME", "add a finding to the vocabulary",
                 {{"--description", "", "TEXT", "what the finding means"}, kJson}, {}, nullptr},
                {"history", kCatalog, "[IMAGE]", "every label event (the audit trail), of one image or all", {kJson}, {}, nullptr},
                {"policy", kCatalog, "",
                 "how the consensus of several readers is derived (adjudicated > unanimous > majority); fine-tuning, "
                 "evaluation, export and the worklist use the consensus",
                 {{"--rule", "", "majority|unanimous", "the rule without an adjudication"},
                  {"--min-readers", "", "N", "readers needed for a consensus (1..100)"},
                  kJson},
                 {}, nullptr},
                {"blinding", kCatalog, "[off|labels|labels+ai]",
                 "blinded reading: others' labels (and the AI's) stay hidden from a reader until they submit their own",
                 {}, {}, nullptr}},
               cmd_labels});
  t.push_back({"adjudicate", kCatalog, "list | IMAGE",
               "list: images where readers disagree (each with its seen_up_to); IMAGE: the OS user's decision as "
               "adjudicator, refused when another adjudicator decided these findings after event N (without --seen: at all)",
               {{"--set", "", "FINDING=VALUE", "the decision; repeat for several findings"},
                {"--seen", "", "N", "the last label event the adjudicator saw"},
                {"--replace", "", "", "replace another adjudicator's decision"},
                {"--comment", "", "TEXT", "a free-text comment"},
                kJson},
               {},
               cmd_adjudicate});
  t.push_back({"agreement", kCatalog, "",
               "per finding: Cohen's kappa per reader pair, Fleiss' kappa, Krippendorff's alpha, each reader against the "
               "consensus and the AI, with 95% intervals by patient bootstrap",
               {{"--finding", "", "F", "only this finding"},
                {"--threshold", "", "T", "the AI's probability counted as present (0..1)"},
                {"--bootstrap", "", "N", "bootstrap resamples"},
                {"--seed", "", "N", "random seed of the bootstrap"},
                kJson},
               {},
               cmd_agreement});
  t.push_back({"catalog", kCatalog, "SUBCOMMAND", "the catalog itself",
               {},
               {{"migrate", kCatalog, "",
                 "move the catalog (--db) into a new one, e.g. a PostgreSQL database for a department; compares the "
                 "rows of every table and a checksum of the label events",
                 {{"--to", "", "URL", "the new catalog: postgresql://[user@]host[:port]/database, or a file", true}, kJson},
                 {}, nullptr}},
               cmd_catalog});
  t.push_back({"export", kCatalog, "[IMAGE...]",
               "write the labels for retraining (ChestX-ray14-style CSV or JSON), with a manifest; removes only files an "
               "earlier export's manifest lists",
               {{"--out", "-o", "DIR", "the folder to write", true},
                {"--format", "", "csv|json|sr|dataset",
                 "the label file's format; sr: one DICOM Structured Report (TID 1500) per image (of the IMAGEs given, else "
                 "all) with the readers' labels and the active model's probabilities, and a Secondary Capture of the attention "
                 "map of each image the model scored; dataset: a training set for cluster/train.py (de-identified PNGs, labels with "
                 "not assessed kept apart, the gate's patient split, the starting model, manifest.json with checksums)",
                 true},
                {"--dicom", "", "", "dataset: de-identified DICOM copies too"},
                {"--model", "", "ID", "dataset: the starting model (else the active one)"},
                {"--deidentify", "", "", "remove identifiers (PS3.15 basic profile) from the labels and images"},
                {"--images", "", "", "write the images too"},
                {"--no-maps", "", "", "sr: the reports only, no attention maps"},
                kJson},
               {},
               cmd_export});

  // ---- the classifier
  t.push_back({"models", kClassifier, "SUBCOMMAND", "the registered model versions",
               {},
               {{"list", kClassifier, "", "registered model versions", {kJson}, {}, nullptr},
                {"show", kClassifier, "ID|VERSION", "parent, strategy, hyperparameters, labels used, metrics", {kJson}, {}, nullptr},
                {"import", kClassifier, "DIR",
                 "register a Hugging Face ViT folder; a folder of cluster/train.py (training_report.json) is checked against "
                 "the catalog, evaluated on the gate's validation patients and promoted only if not worse, as a fine-tune",
                 {{"--version", "", "V", "the version name (else from the folder)"},
                  {"--activate", "", "", "make it the active model"},
                  {"--no-promote", "", "", "a cluster folder: keep it as a candidate"},
                  {"--tolerance", "", "T", "a cluster folder: how much worse (mean AUROC) the gate accepts"},
                  kJson},
                 {}, nullptr},
                {"activate", kClassifier, "ID|VERSION", "make a version the active model", {}, {}, nullptr},
                {"promote", kClassifier, "ID|VERSION", "promote a candidate by hand and make it active", {}, {}, nullptr},
                {"rollback", kClassifier, "", "re-activate the active model's parent", {}, {}, nullptr},
                {"export", kClassifier, "ID|VERSION DIR", "write it as a Hugging Face folder (loads in transformers)", {}, {},
                 nullptr}},
               cmd_models});
  t.push_back({"finetune", kClassifier, "",
               "train a new version on the current labels (calibrate: the same weights, probabilities and thresholds fitted "
               "to this site); promoted only if not worse",
               {{"--strategy", "", "auto|head|last-k|full|calibrate", "what to train (auto: chosen from the number of labels)"},
                {"--epochs", "", "N", "passes over the training images"},
                {"--k", "", "K", "blocks trained by last-k"},
                {"--batch", "", "N", "images per step"},
                {"--lr", "", "X", "learning rate (0, 1]"},
                {"--model", "", "ID", "the version to start from (else the active one)"},
                {"--seed", "", "N", "random seed"},
                {"--tolerance", "", "T", "how much worse (mean AUROC, 0..0.5) the gate accepts"},
                {"--no-promote", "", "", "keep the new version as a candidate"},
                kPrecision,
                kJson},
               {},
               cmd_finetune});
  t.push_back({"evaluate", kClassifier, "",
               "per-finding AUROC (95% CI), ECE, thresholds: on the catalog's labels (or a CSV), or on the patients "
               "`train --data DIR --seed N` held out for validation",
               {{"--model", "", "ID", "the version or folder to evaluate", true},
                {"--labels", "", "CSV", "labels from a CSV instead of the catalog"},
                {"--data", "", "DIR", "the training folder whose held-out patients to use"},
                {"--seed", "", "N", "the seed that training used"},
                {"--fold", "", "K", "the fold that training held out (0..5)"},
                kJson},
               {},
               cmd_evaluate});
  t.push_back({"train", kClassifier, "",
               "train a ViT on folders with one sub-folder per class (NORMAL, PNEUMONIA, ...) or a labels.csv (image, "
               "patient_id, age, one 1/0/empty column per finding); checkpoints every epoch and resumes; writes a Hugging "
               "Face folder with its calibration (pooled and per population) and domain reference; --epochs 0 with --init: "
               "no training, refits the calibration and domain reference of the --init model",
               with_training_options({{"--data", "", "DIR", "a source of training images (repeat for several)"},
                                      {"--repeat", "", "N", "the --data before it counts N times (1..100)"},
                                      {"--population", "", "NAME", "the population of the --data before it"},
                                      {"--ages", "", "MIN-MAX", "the age range in years of the --data before it"},
                                      {"--out", "-o", "DIR", "the model folder to write", true},
                                      {"--outputs", "", "F1,F2,...", "the findings the model outputs"},
                                      {"--drop-path", "", "X", "stochastic depth rate [0, 1]"},
                                      {"--layer-decay", "", "X", "layer-wise learning-rate decay (0, 1]: block d of L at lr * X^(L+1-d); 1 = off"},
                                      {"--center-crop", "", "X",
                                       "the model sees the centre X of each side (0.5..1; 1 = all of it; default: the --init "
                                       "model's, else 1), as training's random crops show it films"},
                                      {"--fold", "", "K",
                                       "hold out the K-th 15% of the patients (0..5, default 0): folds are disjoint, for "
                                       "cross-validation"},
                                      {"--f32", "", "", "write F32 weights"},
                                      {"--reference-data", "", "DIR", "unlabelled films the domain reference describes too (repeat)"}},
                                     "start from this model or pre-trained backbone"),
               {},
               cmd_train});
  t.push_back({"pretrain", kClassifier, "",
               "self-supervised masked-autoencoder pre-training of the encoder on unlabelled films (image folders, or the "
               "catalog's own); checkpoints every epoch and resumes; writes a ViT backbone folder for `train --init`",
               with_training_options({{"--data", "", "DIR [DIR...]", "folders of unlabelled images"},
                                      {"--catalog", "", "", "the catalog's own images instead of --data"},
                                      {"--out", "-o", "DIR", "the backbone folder to write", true},
                                      {"--mask-ratio", "", "R", "the share of patches masked (0, 1)"},
                                      {"--hold-out-seed", "", "N", "leave out the patients `train --seed N` holds out of a training folder"}},
                                     "continue from this backbone"),
               {},
               cmd_pretrain});
  t.push_back({"classify", kClassifier, "[IMAGE...]",
               "calibrated probabilities per finding of the IMAGEs (or --all) and whether the image is within what the model was trained on "
               "(in_domain, domain_score, domain_reason); stored in the catalog per model version",
               {{"--model", "", "DIR|ID", "the model (else the active one)"},
                {"--all", "", "", "every image of the catalog"},
                {"--batch", "", "N", "images per forward pass (1..256)"},
                kJson},
               {},
               cmd_classify});
  t.push_back({"heatmap", kClassifier, "IMAGE",
               "attention map drawn over the displayed image: rollout (where the model looked) or class (what raised one "
               "finding's output; the most probable without --finding)",
               {{"--output", "-o", "OUT.png", "the PNG to write", true},
                {"--model", "", "DIR|ID", "the model (else the active one)"},
                {"--method", "", "rollout|class", "which map"},
                {"--finding", "", "NAME", "the finding of a class map"},
                {"--opacity", "", "A", "opacity of the overlay (0..1)"},
                {"--discard", "", "R", "share of the weakest attention discarded by rollout (0..1)"},
                {"--max-size", "", "PIXELS", "shrink so that neither side exceeds PIXELS"}},
               {},
               cmd_heatmap});
  // ---- the hospital network
  t.push_back({"listen", kNetwork, "",
               "Storage SCP in the foreground until Ctrl-C/SIGTERM: files every CR/DX/Secondary Capture instance it receives "
               "as an import does, one line each; only allowed calling AE titles (and hosts) are accepted",
               {{"--port", "", "N", "the TCP port to listen on", true},
                {"--aet", "", "AET", "our AE title"},
                {"--allow", "", "AET[@HOST]", "a calling AE title (from HOST only) that may send; repeat for several"},
                {"--max-associations", "", "N", "associations at once"},
                {"--max-size-mb", "", "N", "the largest instance accepted"},
                {"--timeout", "", "S", "seconds an association may stay idle"},
                {"--acse-timeout", "", "S", "seconds from a connection to its association request, TLS handshake included (15)"},
                {"--tls-key", "", "KEY.pem", "TLS: our private key (TLS only from then on)"},
                {"--tls-cert", "", "CERT.pem", "TLS: our certificate"},
                {"--tls-ca", "", "CA.pem", "TLS: accept only peers with a certificate signed by this CA; repeat for several"},
                {"--tls-peer-cert", "", "PEER.pem", "TLS: accept a peer presenting this very certificate; repeat for several"},
                {"--tls-no-verify", "", "", "TLS: encrypt without verifying the peer's certificate"}},
               {},
               cmd_listen});
  const OptionSpec peer{"--peer", "", "AET@HOST:PORT", "the PACS", true};
  const OptionSpec ours{"--aet", "", "OURS", "our AE title"};
  const OptionSpec tls_key{"--tls-key", "", "KEY.pem", "TLS: our private key (a client certificate)"};
  const OptionSpec tls_cert{"--tls-cert", "", "CERT.pem", "TLS: our certificate"};
  const OptionSpec tls_ca{"--tls-ca", "", "CA.pem", "TLS: the PACS's certificate must be signed by this CA; repeat for several"};
  const OptionSpec tls_peer{"--tls-peer-cert", "", "PEER.pem", "TLS: the PACS must present this very certificate"};
  const OptionSpec tls_no_verify{"--tls-no-verify", "", "", "TLS: encrypt without verifying the PACS's certificate"};
  // Every pacs subcommand: the peer, our AE title and the TLS options, then its own.
  const auto scu = [&](std::vector<OptionSpec> own) {
    std::vector<OptionSpec> all{peer, ours, tls_key, tls_cert, tls_ca, tls_peer, tls_no_verify};
    all.insert(all.end(), own.begin(), own.end());
    return all;
  };
  t.push_back({"pacs", kNetwork, "SUBCOMMAND", "query, retrieve from and send to a PACS",
               {},
               {{"echo", kNetwork, "", "C-ECHO: is the peer there and does it accept us", scu({}), {}, nullptr},
                {"find", kNetwork, "", "study-level C-FIND",
                 scu({{"--patient-id", "", "ID", "the Patient ID"},
                      {"--patient-name", "", "NAME", "the Patient's Name (wildcards * and ? allowed)"},
                      {"--accession", "", "A", "the Accession Number"},
                      {"--from", "", "YYYYMMDD", "studies from this date"},
                      {"--to", "", "YYYYMMDD", "studies up to this date"},
                      {"--modality", "", "M", "a modality in the study"},
                      kJson}),
                 {}, nullptr},
                {"retrieve", kNetwork, "STUDY_UID...", "C-GET the studies into the catalog (progress; Ctrl-C cancels)",
                 scu({{"--max-total-mb", "", "N", "stop (refusing the rest) past this many MiB in all (default 16384)"},
                      {"--max-size-mb", "", "N", "refuse (A700) an instance above this many MiB (default 1024)"}}), {},
                 nullptr},
                {"send", kNetwork, "[IMAGE...]", "the images' structured reports and attention maps (Secondary Capture), by C-STORE",
                 scu({{"--all", "", "", "every image's results"}, {"--no-maps", "", "", "the reports only"}}), {}, nullptr}},
               cmd_pacs});
  return t;
}

// Appends `text` wrapped to kWidth, its first line continuing `out`'s last line at column `column`.
void append_wrapped(std::string& out, std::string_view text, std::size_t column) {
  std::size_t line_start = out.rfind('\n');
  line_start = line_start == std::string::npos ? 0 : line_start + 1;
  if (out.size() > line_start && out.size() - line_start >= column) {
    out += '\n';
    line_start = out.size();
  }
  out.append(column - (out.size() - line_start), ' ');
  std::size_t length = column;
  std::size_t pos = 0;
  bool first = true;
  while (pos < text.size()) {
    std::size_t end = text.find(' ', pos);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view word = text.substr(pos, end - pos);
    if (!first && length + 1 + word.size() > kWidth) {
      out += '\n';
      out.append(column, ' ');
      length = column;
      first = true;
    }
    if (!first) {
      out += ' ';
      ++length;
    }
    out += word;
    length += word.size();
    first = false;
    pos = end + 1;
  }
  out += '\n';
}

std::string option_synopsis(const OptionSpec& o) {
  std::string s(o.name);
  if (!o.value.empty()) s += " " + std::string(o.value);
  return o.required ? s : "[" + s + "]";
}

// "name operands [--a] [--b X]", wrapped with an indent of 8 under a two-space margin.
std::string synopsis(std::string_view name, const CommandSpec& spec) {
  std::vector<std::string> words{std::string(name)};
  if (!spec.operands.empty()) words.emplace_back(spec.operands);
  for (const auto& o : spec.options) words.push_back(option_synopsis(o));
  std::string out = "  ";
  std::size_t length = 2;
  for (std::size_t i = 0; i < words.size(); ++i) {
    if (i > 0 && length + 1 + words[i].size() > kWidth) {
      out += "\n        ";
      length = 8;
    } else if (i > 0) {
      out += ' ';
      ++length;
    }
    out += words[i];
    length += words[i].size();
  }
  return out;
}

std::string option_line(const OptionSpec& o) {
  std::string s = "  ";
  if (!o.alias.empty() && o.alias.size() == 2) s += std::string(o.alias) + ", " + std::string(o.name);
  else if (!o.alias.empty()) s += std::string(o.name) + ", " + std::string(o.alias);
  else s += std::string(o.name);
  if (!o.value.empty()) s += " " + std::string(o.value);
  append_wrapped(s, o.required ? std::string(o.help) + " (required)" : std::string(o.help), kHelpColumn);
  return s;
}

}  // namespace

const std::vector<std::string_view>& sections() {
  static const std::vector<std::string_view> s{kReading, kCatalog, kClassifier, kNetwork};
  return s;
}

const std::vector<OptionSpec>& global_options() {
  static const std::vector<OptionSpec> o{{"--db", "", "PATH", "the catalog (else $HILUM_DB, else ~/.local/share/Hilum/hilum.db)"},
                                         {"--help", "-h", "", "this help; COMMAND --help: that command's options"},
                                         {"--version", "", "", "the program's version"}};
  return o;
}

const std::vector<CommandSpec>& command_table() {
  static const std::vector<CommandSpec> table = make_table();
  return table;
}

const CommandSpec* find_command(std::string_view name) {
  for (const auto& c : command_table()) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

const CommandSpec* find_subcommand(const CommandSpec& command, std::string_view name) {
  for (const auto& c : command.subcommands) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

const OptionSpec* find_option(const std::vector<OptionSpec>& options, std::string_view spelling) {
  for (const auto& o : options) {
    if (o.name == spelling || (!o.alias.empty() && o.alias == spelling)) return &o;
  }
  return nullptr;
}

std::string global_usage() {
  std::string out = "usage: hilum-cli [--db PATH] <command> [options]\n       hilum-cli <command> --help\n";
  for (const auto section : sections()) {
    out += "\n" + std::string(section) + ":\n";
    for (const auto& c : command_table()) {
      if (c.section != section) continue;
      if (c.subcommands.empty()) {
        out += synopsis(c.name, c);
        append_wrapped(out, c.summary, kHelpColumn);
        continue;
      }
      for (const auto& sub : c.subcommands) {
        out += synopsis(std::string(c.name) + " " + std::string(sub.name), sub);
        append_wrapped(out, sub.summary, kHelpColumn);
      }
    }
  }
  out += "\noptions before the command:\n";
  for (const auto& o : global_options()) out += option_line(o);
  return out;
}

std::string command_help(const CommandSpec& command, const CommandSpec* sub) {
  const CommandSpec& spec = sub != nullptr ? *sub : command;
  std::string name(command.name);
  if (sub != nullptr) name += " " + std::string(sub->name);
  std::string out = "usage: hilum-cli [--db PATH] " + name;
  if (!spec.operands.empty()) out += " " + std::string(spec.operands);
  if (!spec.options.empty()) out += " [options]";
  out += "\n\n";
  append_wrapped(out, spec.summary, 0);
  if (!spec.subcommands.empty()) {
    out += "\nsubcommands (hilum-cli " + name + " SUBCOMMAND --help for one):\n";
    for (const auto& s : spec.subcommands) {
      out += synopsis(s.name, s);
      append_wrapped(out, s.summary, kHelpColumn);
    }
  }
  out += "\noptions:\n";
  for (const auto& o : spec.options) out += option_line(o);
  out += option_line({"--help", "-h", "", "this help"});
  return out;
}

ArgsCheck check_args(const CommandSpec& spec, const std::string& command_name, const Args& args, std::size_t first) {
  ArgsCheck check;
  for (std::size_t i = first; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") break;
    if (a == "--help" || a == "-h") {
      check.help = true;
      return check;
    }
    const bool long_option = a.size() > 2 && a.compare(0, 2, "--") == 0;
    const bool short_option = a.size() == 2 && a[0] == '-' && ((a[1] >= 'a' && a[1] <= 'z') || (a[1] >= 'A' && a[1] <= 'Z'));
    if (!long_option && !short_option) continue;  // an operand
    const OptionSpec* o = find_option(spec.options, a);
    if (o == nullptr) {
      check.error = command_name + ": unknown option " + a + " (see hilum-cli " + command_name + " --help)";
      return check;
    }
    if (!o->value.empty()) {
      if (i + 1 >= args.size()) {
        check.error = command_name + ": " + a + " takes " + std::string(o->value) + " (see hilum-cli " + command_name + " --help)";
        return check;
      }
      ++i;
    }
  }
  return check;
}

int run_command(const Global& global, const Args& argv) {
  if (argv.empty()) {
    std::fputs(global_usage().c_str(), stderr);
    return kExitUsage;
  }
  const std::string& name = argv[0];
  if (name == "help" || name == "-h" || name == "--help") {
    // hilum-cli help [COMMAND [SUBCOMMAND]]
    const CommandSpec* c = argv.size() > 1 ? find_command(argv[1]) : nullptr;
    if (argv.size() > 1 && c == nullptr) return usage_error("help: unknown command '" + argv[1] + "'");
    if (c == nullptr) {
      std::fputs(global_usage().c_str(), stdout);
      return kExitOk;
    }
    const CommandSpec* sub = argv.size() > 2 ? find_subcommand(*c, argv[2]) : nullptr;
    std::fputs(command_help(*c, sub).c_str(), stdout);
    return kExitOk;
  }
  const CommandSpec* command = find_command(name);
  if (command == nullptr) {
    std::fprintf(stderr, "hilum-cli: unknown command '%s'\n\n%s", name.c_str(), global_usage().c_str());
    return kExitUsage;
  }
  const Args args(argv.begin() + 1, argv.end());
  const CommandSpec* spec = command;
  std::string spec_name = name;
  std::size_t first = 0;
  if (!command->subcommands.empty()) {
    std::string names;
    for (const auto& s : command->subcommands) names += (names.empty() ? "" : ", ") + std::string(s.name);
    if (args.empty()) return usage_error(name + ": give a subcommand (" + names + ")");
    if (args[0] == "--help" || args[0] == "-h") {
      std::fputs(command_help(*command).c_str(), stdout);
      return kExitOk;
    }
    spec = find_subcommand(*command, args[0]);
    if (spec == nullptr) return usage_error(name + ": unknown subcommand " + args[0] + " (" + names + ")");
    spec_name += " " + args[0];
    first = 1;
  }
  const ArgsCheck check = check_args(*spec, spec_name, args, first);
  if (check.help) {
    std::fputs(command_help(*command, spec == command ? nullptr : spec).c_str(), stdout);
    return kExitOk;
  }
  if (!check.error.empty()) {
    std::fprintf(stderr, "hilum-cli: %s\n", check.error.c_str());
    return kExitUsage;
  }
  return command->handler(global, args);
}

}  // namespace hilum::cli
