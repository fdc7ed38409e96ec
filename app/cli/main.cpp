// hilum-cli: Hilum's command-line tool.
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>

#include "commands.hpp"

namespace {

constexpr const char* kUsage = R"(usage: hilum-cli [--db PATH] <command> [options]

reading DICOM (no catalog):
  info FILE...            one JSON object per line per file (a DICOMDIR expands to its images);
                          exit status 1 when any file failed
      --no-pixels         read attributes only (no pixel decoding, no window)
  render FILE -o OUT.png  8-bit display rendering after the full DICOM display pipeline
      --window C,W        window centre and width in modality units
      --preset N          the file's N-th window preset (1-based)
      --voi-lut N         the file's N-th VOI LUT (1-based)
      --auto              automatic (histogram) window, ignoring collimator borders
      --min-max           window over the full range of modality values
      --invert            invert on top of the file's polarity
      --max-size PIXELS   shrink (area average) so that neither side exceeds PIXELS
  dicomdir DICOMDIR       list patients / studies / series / images of a DICOMDIR  [--json]

the catalog (--db PATH, else $HILUM_DB, else ~/.local/share/Hilum/hilum.db):
  import PATH...          import files, folders (recursive) and DICOMDIRs  [--jobs N] [--copy] [--no-classify] [--json]
                          (new images are classified by the active model as they are imported)
  list                    what the catalog holds  [--studies|--images] [--unlabeled|--labeled] [--json]
  label IMAGE --set FINDING=present|absent|uncertain... --author NAME [--region x,y,w,h]
        [--comment TEXT] [--json]
  label --from-csv FILE --author NAME [--json]
  labels list [--json]    the vocabulary
  labels add NAME [--description TEXT]
  labels history [IMAGE] [--json]   every label event (the audit trail)
  export --out DIR --format csv|json [--deidentify] [--images] [--json]

the classifier (a Hugging Face ViT folder: config.json + model.safetensors):
  models list [--json]    registered model versions
  models show ID|VERSION [--json]   parent, strategy, hyperparameters, labels used, metrics
  models import DIR [--version V] [--activate]
  models activate|promote ID|VERSION
  models rollback         re-activate the active model's parent
  models export ID|VERSION DIR   write it as a Hugging Face folder (loads in transformers)
  finetune [--strategy auto|head|last-k|full|calibrate] [--epochs N] [--k K] [--batch N] [--lr X]
        [--model ID] [--seed N] [--tolerance T] [--no-promote] [--precision bf16|f32] [--json]
                          train a new version on the current labels (calibrate: the same weights,
                          probabilities and thresholds fitted to this site); promoted only if not worse
                          (bf16, the default: mixed precision when the CPU has AVX512_BF16)
  evaluate --model ID [--labels CSV | --data DIR [--seed N]] [--json]
                          per-finding AUROC (95% CI), ECE, thresholds: on the catalog's labels (or a
                          CSV), or on the patients `train --data DIR --seed N` held out for validation
  train --data DIR [--repeat N] [--population NAME] [--ages MIN-MAX] [--data DIR ...] --out DIR
        [--outputs F1,F2,...] [--arch vit-ti16|vit-ti16-d6|vit-s16] [--image-size N] [--epochs N]
        [--batch N] [--lr X] [--weight-decay X] [--drop-path X] [--warmup-epochs N] [--seed N]
        [--init DIR] [--max-images N] [--precision bf16|f32] [--f32] [--json]
                          train a ViT on folders with one sub-folder per class (NORMAL, PNEUMONIA, ...)
                          or a labels.csv (image, patient_id, age, one 1/0/empty column per finding);
                          --repeat/--population/--ages describe the --data before them; checkpoints
                          every epoch and resumes; writes a Hugging Face folder with its calibration
                          and domain reference (--precision: the step's arithmetic; --f32: F32 weights)
  pretrain (--data DIR [DIR...] | --catalog) --out DIR [--arch vit-ti16|vit-ti16-d6|vit-s16]
        [--image-size N] [--epochs N] [--batch N] [--lr X] [--mask-ratio R] [--seed N] [--init DIR]
        [--max-images N] [--precision bf16|f32] [--json]
                          self-supervised masked-autoencoder pre-training of the encoder on unlabelled
                          films (image folders, or the catalog's own); checkpoints every epoch and
                          resumes; writes a ViT backbone folder for `train --init` (no classifier)
  classify [--model DIR|ID] (--all | IMAGE...) [--batch N] [--json]
                          calibrated probabilities per finding and whether the image is within what
                          the model was trained on (in_domain, domain_score, domain_reason); stored
                          in the catalog per model version
  heatmap IMAGE -o OUT.png [--model DIR|ID] [--method rollout|class] [--finding NAME] [--opacity A]
        [--discard R] [--max-size PIXELS]
                          attention map drawn over the displayed image: rollout (where the model looked)
                          or class (what raised one finding's output; the most probable without --finding)

  --help, --version
)";

}  // namespace

int main(int argc, char** argv) {
  using namespace hilum::cli;
  Global global;
  int i = 1;
  while (i < argc && std::strncmp(argv[i], "--", 2) == 0) {
    const std::string option = argv[i];
    if (option == "--db") {
      if (i + 1 >= argc) {
        std::fputs("hilum-cli: --db needs a PATH\n", stderr);
        return kExitUsage;
      }
      global.db = argv[i + 1];
      i += 2;
    } else if (option == "--help") {
      std::fputs(kUsage, stdout);
      return kExitOk;
    } else if (option == "--version") {
      std::puts("hilum-cli " HILUM_VERSION);
      return kExitOk;
    } else {
      std::fprintf(stderr, "hilum-cli: unknown option '%s'\n\n%s", option.c_str(), kUsage);
      return kExitUsage;
    }
  }
  if (i >= argc) {
    std::fputs(kUsage, stderr);
    return kExitUsage;
  }
  const std::string command = argv[i];
  const Args args(argv + i + 1, argv + argc);
  if (command == "help" || command == "-h") {
    std::fputs(kUsage, stdout);
    return kExitOk;
  }
  if (command == "info") return cmd_info(args);
  if (command == "render") return cmd_render(args);
  if (command == "dicomdir") return cmd_dicomdir(args);
  if (command == "import") return cmd_import(global, args);
  if (command == "list") return cmd_list(global, args);
  if (command == "label") return cmd_label(global, args);
  if (command == "labels") return cmd_labels(global, args);
  if (command == "export") return cmd_export(global, args);
  if (command == "classify") return cmd_classify(global, args);
  if (command == "heatmap") return cmd_heatmap(global, args);
  if (command == "models") return cmd_models(global, args);
  if (command == "finetune") return cmd_finetune(global, args);
  if (command == "evaluate") return cmd_evaluate(global, args);
  if (command == "train") return cmd_train(global, args);
  if (command == "pretrain") return cmd_pretrain(global, args);
  std::fprintf(stderr, "hilum-cli: unknown command '%s'\n\n%s", command.c_str(), kUsage);
  return kExitUsage;
}
