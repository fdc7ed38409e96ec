// Hilum app: the catalog, one database holding patients, studies, series and instances (the
// files stay where they are), the label vocabulary, every label ever set (an append-only audit
// trail; each reader's current label and the consensus are derived from it), predictions, models,
// cached embeddings and jobs. Two storage engines behind one internal interface (catalog/src/
// database.hpp): an SQLite file (the default) or a PostgreSQL database (a "postgresql://" URI).
// The one place in Hilum that talks SQL (the hilum_catalog library). Not thread-safe: one Catalog per thread.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "hilum/app/domain_check.hpp"
#include "hilum/core/expected.hpp"

struct sqlite3;

namespace hilum::app {

// The worklist's types (hilum/app/worklist.hpp, which callers include).
struct WorklistQuery;
struct WorklistItem;
struct WorklistCounts;
struct LabelActivity;

enum class ErrorKind {
  CannotOpen,    // missing folder, permissions, not a database
  Locked,        // another process holds the write lock beyond the busy timeout
  ReadOnly,      // the file or its folder cannot be written
  Corrupt,       // PRAGMA integrity_check failed, or the file is not a Hilum catalog
  NewerSchema,   // written by a newer Hilum: refused, never downgraded
  NotFound,      // no such image / finding / job
  Invalid,       // bad input (unknown finding, malformed region, ...)
  Conflict,      // same SOP Instance UID, different content
  Io,            // file system error outside the database
  Interrupted,   // cancelled by the user (Ctrl-C, cancel button)
};
[[nodiscard]] const char* to_string(ErrorKind kind);

struct Error {
  ErrorKind kind = ErrorKind::Invalid;
  std::string message;
};

template <typename T>
using Result = core::Expected<T, Error>;
using Status = Result<core::Done>;

// Where the catalog lives when nothing is said: $HILUM_DB (a file, or a "postgresql://" URI), else $XDG_DATA_HOME/Hilum/hilum.db,
// else ~/.local/share/Hilum/hilum.db.
[[nodiscard]] std::filesystem::path default_catalog_path();
// The local folder of a server (PostgreSQL) catalog's files, `key` naming the server and database
// ("<host>_<port>_<database>", sanitised): $HILUM_DATA_DIR when set (e.g. a share every
// workstation mounts at the same place), else $XDG_DATA_HOME/Hilum/postgresql/<key>, else
// ~/.local/share/Hilum/postgresql/<key>.
[[nodiscard]] std::filesystem::path server_catalog_folder(const std::string& key);
// A catalog's location as it may be shown (title bars, messages, logs): a file path as it is, a
// server URI without its password ("postgresql://user:***@host/db", "...?password=***").
[[nodiscard]] std::string shown_catalog_location(const std::string& location);

// ---- Records -------------------------------------------------------------------------------

struct InstanceRecord {
  // Identity and file.
  std::string sop_instance_uid;
  std::string sop_class_uid;
  std::string path;               // absolute path of the file as imported
  std::string stored_path;        // copy in the managed store, if any
  std::int64_t file_size = 0;
  std::int64_t file_mtime = 0;    // seconds since the epoch
  std::string content_hash;       // SHA-256 of the file bytes, hex
  // Hierarchy (the catalog creates or reuses patient/study/series rows from these).
  std::string patient_id;
  std::string patient_name;
  std::string patient_birth_date;
  std::string patient_sex;
  std::string patient_age;        // DICOM AS, e.g. "045Y"
  std::string study_instance_uid;
  std::string study_date;
  std::string study_time;
  std::string study_description;
  std::string accession_number;
  std::string series_instance_uid;
  std::string series_number;
  std::string series_description;
  std::string modality;
  // Image attributes.
  std::string transfer_syntax_uid;
  std::string photometric;        // MONOCHROME1 / MONOCHROME2
  int rows = 0;
  int columns = 0;
  int bits_stored = 0;
  std::string view_position;
  std::string body_part;
  std::string laterality;
  std::optional<double> pixel_spacing_row;
  std::optional<double> pixel_spacing_column;
  std::string acquisition_date;
  std::string acquisition_time;
  std::string burned_in_annotation;
  std::optional<double> window_center;  // the window the reader chose for display
  std::optional<double> window_width;
  std::vector<std::uint8_t> thumbnail_png;  // small 8-bit PNG (longest side <= 128)
};

struct Instance : InstanceRecord {
  std::int64_t id = 0;
  std::string imported_at;        // ISO 8601 UTC
};

// Conflict: the SOP Instance UID is in the catalog with different content. PatientConflict: the
// record's Study Instance UID belongs to another patient in the catalog (or its Series Instance UID
// to another study), as when a modality or an anonymiser reuses UIDs; the image is never attached
// to another patient's study (Catalog::attach_conflict says why).
enum class PutOutcome { Inserted, AlreadyPresent, Conflict, PatientConflict };

struct Finding {
  std::int64_t id = 0;
  std::string name;               // e.g. "Effusion"
  std::string description;
  bool builtin = false;           // ChestX-ray14's 14 findings and "No Finding"
  std::string created_at;
};

// The enums below are stored in the catalog and printed in JSON as text. Each has one table of
// names (catalog/src/enums.cpp): to_string gives the stored spelling, X_from_string reads exactly
// that spelling back and refuses any other (ErrorKind::Invalid, naming the known values).
enum class LabelValue { Present, Absent, Uncertain, Cleared };
[[nodiscard]] const char* to_string(LabelValue v);  // "present", "absent", "uncertain", "cleared"
[[nodiscard]] Result<LabelValue> label_value_from_string(std::string_view s);
// A value typed by a person or read from a CSV: the stored names and their synonyms, in any case
// ("1"/"yes"/"positive", "0"/"no"/"negative", "-1"/"?", "clear"/"none").
[[nodiscard]] std::optional<LabelValue> parse_label_value(const std::string& s);

// What a label event is: one reader's reading of the image, or an adjudicator's decision (which
// settles the consensus whatever the readers said; "cleared" withdraws it).
enum class LabelKind { Reading, Adjudication };
[[nodiscard]] const char* to_string(LabelKind k);  // "reading", "adjudication"
[[nodiscard]] Result<LabelKind> label_kind_from_string(std::string_view s);

// Where a label event was entered: the command line, a labels CSV, the GUI, or the catalog's own
// adjudication command. The catalog refuses any other (a CHECK in the schema, since schema 7).
enum class LabelSource { Cli, Csv, Gui, Adjudication };
[[nodiscard]] const char* to_string(LabelSource s);  // "cli", "csv", "gui", "adjudication"
[[nodiscard]] Result<LabelSource> label_source_from_string(std::string_view s);

// How the consensus label of an image and finding is derived from the readers' current labels:
// an adjudicator's decision first; else the value all readers gave (unanimous); else, with the
// Majority rule, the value more than half of them gave. Fewer than `min_readers` readers, a tie,
// or (Unanimous rule) any disagreement: no consensus (the finding is not assessed in the
// consensus; the image is in the adjudication queue). "No Finding" present by consensus is left
// out when another finding is present by consensus. Stored in the catalog's settings.
struct ConsensusPolicy {
  enum class Rule { Majority, Unanimous };
  Rule rule = Rule::Majority;
  int min_readers = 1;
  // "adjudicated > unanimous > majority (at least 1 reader)": said by every workflow that uses labels.
  [[nodiscard]] std::string describe() const;
};
[[nodiscard]] const char* to_string(ConsensusPolicy::Rule r);  // "majority", "unanimous"
[[nodiscard]] Result<ConsensusPolicy::Rule> consensus_rule_from_string(std::string_view s);

// The reader at this computer: the OS user (getpwuid of the effective uid; $USER when the
// password database does not know it). Every label event records it as `recorded_by`.
[[nodiscard]] std::string current_os_user();

// A region in image pixel coordinates: a rectangle (x, y, w, h) or a polygon.
struct Region {
  enum class Shape { Rectangle, Polygon };
  Shape shape = Shape::Rectangle;
  double x = 0, y = 0, w = 0, h = 0;             // rectangle
  std::vector<std::pair<double, double>> points;  // polygon, at least 3 points
  [[nodiscard]] std::string to_json() const;
  static std::optional<Region> from_json(const std::string& json);
  // Axis-aligned bounding box (x, y, w, h) of either shape.
  [[nodiscard]] Region bounding_box() const;
};

struct LabelInput {
  std::string image;              // SOP Instance UID or a path in the catalog
  std::string finding;            // a name in the vocabulary (case-insensitive)
  LabelValue value = LabelValue::Present;
  std::optional<Region> region;
  // The reader (or adjudicator) whose label this is; empty = the OS user. Another name is allowed
  // (importing a colleague's labels) and recorded as entered by the OS user on behalf of it.
  std::string author;
  std::optional<std::string> model_version;    // the model shown when the label was set
  std::optional<double> model_probability;     // and its probability for this finding
  std::string comment;
  LabelSource source = LabelSource::Cli;
  LabelKind kind = LabelKind::Reading;
  // A client-generated key, unique in the catalog (1-128 printable ASCII characters; empty: none):
  // an input whose key is stored already is not written again, and add_labels returns the stored
  // event's id (a change retried after a lost reply is written once; see app/label_outbox.hpp).
  std::string event_key;
};

struct LabelEvent {
  std::int64_t id = 0;
  std::int64_t instance_id = 0;
  std::string sop_instance_uid;
  std::string finding;
  LabelValue value = LabelValue::Present;
  std::optional<Region> region;
  std::string author;
  std::string created_at;         // ISO 8601 UTC with milliseconds
  std::optional<std::string> model_version;
  std::optional<double> model_probability;
  std::string comment;
  LabelSource source = LabelSource::Cli;
  LabelKind kind = LabelKind::Reading;
  std::string recorded_by;        // the OS user who entered it ("" before catalog schema 5)
  // Consensus labels only: how it was reached ("adjudicated", "unanimous", "majority"), how many
  // readers labelled the finding and how many of them gave this value. The other fields are those
  // of the event that carries the value (the adjudication, or the newest agreeing reading).
  std::string basis;
  int readers = 0;
  int agreeing = 0;
};

// An image and finding where readers gave different values (or one reader said "No Finding" while
// another marked a finding present), not yet adjudicated.
struct Disagreement {
  std::string finding;
  std::vector<std::pair<std::string, LabelValue>> readers;  // author -> current value, by author
  std::optional<LabelValue> consensus;                      // what the policy decides anyway (majority)
};
struct DisagreementItem {
  std::int64_t instance_id = 0;
  std::string sop_instance_uid;
  std::string patient_id;
  std::string study_instance_uid;
  std::int64_t newest_event_id = 0;  // the newest label event of the image (for adjudicate's check)
  std::vector<Disagreement> findings;
};

// What a reader may see of an image's labels under blinded reading (see Catalog::reader_view).
struct ReaderView {
  std::vector<LabelEvent> own;        // the reader's current labels
  std::vector<LabelEvent> others;     // the other readers' current labels (empty while blinded)
  std::vector<LabelEvent> consensus;  // the consensus (empty while blinded)
  bool submitted = false;             // the reader submitted a reading of the image
  bool blinded = false;               // others' labels are withheld
  bool ai_hidden = false;             // the model's predictions are withheld too
};

// Blinded double reading, a catalog setting: Off (everyone sees everything), Labels (a reader sees
// no other reader's labels, nor the consensus, before submitting their own reading), LabelsAndAi
// (nor the model's predictions).
enum class Blinding { Off, Labels, LabelsAndAi };
[[nodiscard]] const char* to_string(Blinding b);  // "off", "labels", "labels+ai"
[[nodiscard]] Result<Blinding> blinding_from_string(std::string_view s);
// A mode typed by a person: the stored names and "none", "on", "all", in any case.
[[nodiscard]] std::optional<Blinding> parse_blinding(const std::string& s);

struct InstanceFilter {
  enum class Labelled { Any, Labelled, Unlabelled };
  Labelled labelled = Labelled::Any;
  std::optional<std::string> study_instance_uid;
  std::optional<std::string> patient_id;
  bool with_thumbnails = true;  // false: leave Instance::thumbnail_png empty (large listings)
};

struct StudySummary {
  std::string study_instance_uid;
  std::string patient_id;
  std::string patient_name;
  std::string study_date;
  std::string study_description;
  std::string accession_number;
  int images = 0;
  int labelled_images = 0;
};

// A background job (import, fine-tune, export) and its work items, kept so that an interrupted
// job can be finished by running it again.
enum class JobStatus { Running, Interrupted, Done, Failed };
[[nodiscard]] const char* to_string(JobStatus s);  // "running", "interrupted", "done", "failed"
[[nodiscard]] Result<JobStatus> job_status_from_string(std::string_view s);

// What became of one work item (an import's file).
enum class JobItemStatus { Pending, Imported, Present, Conflict, Skipped, NotDicom, Failed };
// "pending", "imported", "present", "conflict", "skipped", "not-dicom", "failed"
[[nodiscard]] const char* to_string(JobItemStatus s);
[[nodiscard]] Result<JobItemStatus> job_item_status_from_string(std::string_view s);

struct Job {
  std::int64_t id = 0;
  std::string kind;               // "import", ...
  std::string params;             // JSON, as the job was started
  JobStatus status = JobStatus::Running;
  std::string created_at;
  std::string updated_at;
  std::string summary;            // JSON, when done
};

struct JobItem {
  std::int64_t id = 0;
  std::string path;
  JobItemStatus status = JobItemStatus::Pending;
  std::string reason;             // why skipped / failed
};

// A model version's standing: the one active model (used by classify), candidates, retired ones.
enum class ModelStatus { Active, Candidate, Retired };
[[nodiscard]] const char* to_string(ModelStatus s);  // "active", "candidate", "retired"
[[nodiscard]] Result<ModelStatus> model_status_from_string(std::string_view s);

// A model version known to the catalog (the weights live in a Hugging Face folder at `path`).
struct ModelRecord {
  std::int64_t id = 0;
  std::string version;            // unique, e.g. "hilum-vit-ti16-pneumonia-1"
  std::optional<std::int64_t> parent_id;
  std::string name;
  std::string strategy;           // builtin, imported, head, last-k, full
  std::string hyperparameters = "{}";  // JSON
  std::string label_snapshot = "{}";   // JSON
  std::string metrics = "{}";          // JSON
  ModelStatus status = ModelStatus::Candidate;
  std::string status_reason;
  std::string path;
  std::string created_at;
};

struct PredictionRow {
  std::string finding;
  double probability = 0.0;
  std::string computed_at;
};

// What Catalog::copy_to moved: rows per table on each side, and a checksum of the label events as
// each side reads them back (SHA-256, hex).
struct CopyReport {
  std::vector<std::pair<std::string, std::int64_t>> source_rows;
  std::vector<std::pair<std::string, std::int64_t>> target_rows;
  std::string source_checksum;
  std::string target_checksum;
  [[nodiscard]] bool identical() const { return source_rows == target_rows && source_checksum == target_checksum; }
};

// ---- The catalog ---------------------------------------------------------------------------

class Catalog {
 public:
  enum class Mode { ReadWriteCreate, ReadWrite, ReadOnly };

  // `path` is a file (SQLite) or a libpq URI "postgresql://[user@]host[:port]/database[?...]"
  // (PostgreSQL: the schema is created in an empty database; see catalog/README.md).
  // SQLite: opens (creating the file and its folder with ReadWriteCreate), sets WAL mode, foreign keys
  // and a busy timeout, checks it is a Hilum catalog and runs pending migrations in one
  // transaction. A damaged file is reported (ErrorKind::Corrupt) and never overwritten.
  // ReadOnly works on read-only storage too (a CD, a read-only share): the catalog is then read
  // as immutable. The other modes refuse a catalog whose file or folder cannot be written
  // (ErrorKind::ReadOnly, saying that browsing works read-only) before touching it.
  static Result<Catalog> open(const std::filesystem::path& path, Mode mode = Mode::ReadWriteCreate);

  Catalog(Catalog&&) noexcept;
  Catalog& operator=(Catalog&&) noexcept;
  Catalog(const Catalog&) = delete;
  Catalog& operator=(const Catalog&) = delete;
  ~Catalog();

  [[nodiscard]] const std::filesystem::path& path() const;
  // Where the files derived from the catalog live (the managed image store "store/", the model-input
  // cache "store/model-inputs/", the model versions "<stem>.models/"): beside local_path(), named
  // after its stem. SQLite: the catalog file itself. PostgreSQL: "<server_catalog_folder()>/catalog"
  // (a name, no file; the folder is the database's own), never the URL's text. Everything that places such files uses it.
  [[nodiscard]] const std::filesystem::path& local_path() const;
  // local_path()'s folder.
  [[nodiscard]] std::filesystem::path local_folder() const;
  [[nodiscard]] int schema_version() const;
  [[nodiscard]] static int latest_schema_version();

  // "ok", or SQLite's list of problems.
  [[nodiscard]] Result<std::string> integrity_check();

  // ---- Instances.
  // Inserts a batch in one transaction. Same SOP Instance UID and same content hash: AlreadyPresent
  // (the row is kept as it is); same UID, different content: Conflict (nothing replaced); a study
  // UID of another patient (or a series UID of another study): PatientConflict (nothing written).
  [[nodiscard]] Result<std::vector<PutOutcome>> put_instances(const std::vector<InstanceRecord>& records);
  // Why put_instances would not attach `record` to the catalog's hierarchy (its study belongs to
  // another patient, its series to another study), naming both patient IDs; nullopt when it fits.
  [[nodiscard]] Result<std::optional<std::string>> attach_conflict(const InstanceRecord& record);
  // By SOP Instance UID, else by path (as given, then made absolute).
  [[nodiscard]] Result<std::optional<Instance>> find_instance(const std::string& uid_or_path);
  [[nodiscard]] Result<std::vector<Instance>> list_instances(const InstanceFilter& filter = {});
  [[nodiscard]] Result<std::vector<StudySummary>> list_studies(const InstanceFilter& filter = {});
  // Path -> (size, mtime) of every imported file (a fast "already imported?" check on resume).
  [[nodiscard]] Result<std::vector<std::pair<std::string, std::pair<std::int64_t, std::int64_t>>>> file_stamps();
  [[nodiscard]] Result<std::int64_t> count_instances();

  // ---- Vocabulary.
  [[nodiscard]] Result<std::vector<Finding>> findings();
  [[nodiscard]] Result<Finding> add_finding(const std::string& name, const std::string& description);

  // ---- Labels (append-only: nothing is ever updated or deleted).
  // All-or-nothing: every input is checked first (image known, finding known, region valid, "No
  // Finding" exclusive among the author's own labels), then all are written in one transaction.
  // Each event records the OS user as recorded_by. Adjudications go through adjudicate().
  // Inputs with an event key already stored are skipped (their stored ids returned).
  [[nodiscard]] Result<std::vector<std::int64_t>> add_labels(const std::vector<LabelInput>& labels);
  [[nodiscard]] Result<std::vector<LabelEvent>> label_history(const std::string& uid_or_path = {});
  // Each reader's current label: the reader's latest reading event per (image, finding), Cleared
  // ones left out. Empty uid: every image; empty author: every reader.
  [[nodiscard]] Result<std::vector<LabelEvent>> reader_labels(const std::string& uid_or_path = {}, const std::string& author = {});
  // The consensus label per (image, finding) under the catalog's policy (LabelEvent::basis says
  // how). What fine-tuning, evaluation, export and the worklist use. Empty uid: every image.
  [[nodiscard]] Result<std::vector<LabelEvent>> consensus_labels(const std::string& uid_or_path = {});
  // The same as consensus_labels (the name before several readers).
  [[nodiscard]] Result<std::vector<LabelEvent>> current_labels(const std::string& uid_or_path = {}) {
    return consensus_labels(uid_or_path);
  }
  [[nodiscard]] Result<ConsensusPolicy> consensus_policy();
  [[nodiscard]] Status set_consensus_policy(const ConsensusPolicy& policy);

  // ---- Adjudication.
  // Images where readers disagree and no adjudicator has decided, those without any consensus first.
  [[nodiscard]] Result<std::vector<DisagreementItem>> disagreements();
  // Records an adjudicator's decisions on one image (kind Adjudication) in one transaction, which
  // first checks that no other adjudication of these findings was recorded after event
  // `seen_up_to` (the newest event the adjudicator saw; empty: none may exist at all): when
  // another adjudicator was first, ErrorKind::Conflict names them and nothing is written.
  [[nodiscard]] Result<std::vector<std::int64_t>> adjudicate(const std::string& uid_or_path,
                                                             const std::vector<std::pair<std::string, LabelValue>>& decisions,
                                                             const std::string& adjudicator, const std::string& comment = {},
                                                             std::optional<std::int64_t> seen_up_to = std::nullopt);

  // ---- Blinded reading.
  [[nodiscard]] Result<Blinding> blinding();
  [[nodiscard]] Status set_blinding(Blinding b);
  // Marks `reader`'s reading of the image as submitted (idempotent).
  [[nodiscard]] Status submit_reading(const std::string& uid_or_path, const std::string& reader);
  // What `reader` may see of the image's labels now.
  [[nodiscard]] Result<ReaderView> reader_view(const std::string& uid_or_path, const std::string& reader);

  // ---- De-identification support: a keyed, consistent mapping kept only in the catalog.
  // The pseudonym of `original` in namespace `kind` ("patient", "uid", "accession", ...), created
  // on first use and the same forever after. UID kinds get a "2.25." UID; the others a
  // 15-character "HIL" + hex value that fits any DICOM string VR (Accession Number is SH, 16).
  [[nodiscard]] Result<std::string> pseudonym(const std::string& kind, const std::string& original);
  // The catalog's secret (32 random bytes, hex), created on first use.
  [[nodiscard]] Result<std::string> secret();

  // ---- Jobs.
  [[nodiscard]] Result<std::int64_t> create_job(const std::string& kind, const std::string& params,
                                                const std::vector<std::string>& item_paths);
  // The most recent job of `kind` with exactly these params that is not done, if any.
  [[nodiscard]] Result<std::optional<Job>> unfinished_job(const std::string& kind, const std::string& params);
  [[nodiscard]] Result<Job> job(std::int64_t id);
  [[nodiscard]] Result<std::vector<JobItem>> job_items(std::int64_t job_id, bool pending_only);
  // Records the outcome of items (call inside the same transaction as the work they describe).
  [[nodiscard]] Status finish_job_items(const std::vector<JobItem>& items);
  [[nodiscard]] Status set_job_status(std::int64_t job_id, JobStatus status, const std::string& summary = {});

  // ---- Models and predictions.
  // Registers a model version; its output labels join the vocabulary when they are new.
  [[nodiscard]] Result<ModelRecord> register_model(const ModelRecord& model, const std::vector<std::string>& labels);
  [[nodiscard]] Result<std::vector<ModelRecord>> models();
  // By version, else by numeric id.
  [[nodiscard]] Result<std::optional<ModelRecord>> find_model(const std::string& version_or_id);
  [[nodiscard]] Result<std::optional<ModelRecord>> active_model();
  // Makes `id` the one active model (the previous active one becomes a candidate), in one transaction.
  [[nodiscard]] Status activate_model(std::int64_t id, const std::string& reason);
  // Stores (replaces) one image's predictions by one model.
  // With `domain`, the domain check's verdict is stored (replaced) in the same transaction.
  [[nodiscard]] Status put_predictions(const std::string& sop_instance_uid, std::int64_t model_id,
                                       const std::vector<std::pair<std::string, double>>& probabilities,
                                       const std::optional<DomainCheck>& domain = std::nullopt);
  [[nodiscard]] Result<std::vector<PredictionRow>> predictions(const std::string& sop_instance_uid, std::int64_t model_id);
  // The domain check stored with an image's predictions by one model (none before it was classified
  // by a version that checks, or by one older than the check).
  [[nodiscard]] Result<std::optional<DomainCheck>> prediction_domain(const std::string& sop_instance_uid, std::int64_t model_id);

  // ---- Cached embeddings: the CLS vector of an image under a backbone version (head refits
  // need no forward pass for images seen before). Stored (replaced) in one transaction.
  [[nodiscard]] Status put_embeddings(const std::string& backbone_version,
                                      const std::vector<std::pair<std::int64_t, std::vector<float>>>& rows);
  // instance id -> vector, for every cached image of the backbone.
  [[nodiscard]] Result<std::map<std::int64_t, std::vector<float>>> embeddings(const std::string& backbone_version);

  // ---- Settings (key/value).
  [[nodiscard]] Result<std::optional<std::string>> setting(const std::string& key);
  [[nodiscard]] Status set_setting(const std::string& key, const std::string& value);

  // Runs `body` inside one transaction (BEGIN IMMEDIATE ... COMMIT, ROLLBACK on error). Nested
  // calls (put_instances inside a caller's transaction) become savepoints of the outer one.
  [[nodiscard]] Status transaction(const std::function<Status()>& body);

  // ---- Moving a catalog (hilum-cli catalog migrate).
  // Copies this whole catalog into `target` (a new catalog, e.g. on PostgreSQL): every table, ids and
  // the label history as they are, in one transaction of the target. Refused (Conflict) when the
  // target already holds images, labels, models or jobs. Then counts both sides and checksums
  // their label events (CopyReport::identical).
  [[nodiscard]] Result<CopyReport> copy_to(Catalog& target);
  // SHA-256 (hex) of every label event as label_history() reads it, in id order.
  [[nodiscard]] Result<std::string> label_events_checksum();

  // ---- The worklist's queries (called through app::worklist, worklist_counts, label_activity in
  // hilum/app/worklist.hpp, which documents them).
  [[nodiscard]] Result<std::vector<WorklistItem>> worklist(const WorklistQuery& query);
  [[nodiscard]] Result<WorklistCounts> worklist_counts(const WorklistQuery& query);
  [[nodiscard]] Result<LabelActivity> label_activity(std::int64_t after_id);

  // The raw SQLite connection, for tests that check what the database itself enforces (append-only
  // triggers, damaged files); nullptr on PostgreSQL. No workflow uses it: every SQL statement lives
  // behind this class.
  [[nodiscard]] sqlite3* handle();

  // Who is reading, as the catalog records it (recorded_by, the default author): the OS user on
  // SQLite, the database role (current_user) on PostgreSQL, which the database itself checks.
  [[nodiscard]] const std::string& reader() const;

 private:
  struct Impl;
  explicit Catalog(std::unique_ptr<Impl> impl);
  Result<std::vector<std::int64_t>> append_labels(const std::vector<LabelInput>& labels, const std::function<Status()>& inside);
  std::unique_ptr<Impl> impl_;
};

// The schema's migration steps, oldest first (migrations()[k] takes version k to k+1); exposed
// so tests can build a catalog at every earlier version and open it with the current code.
[[nodiscard]] const std::vector<std::string>& catalog_migrations();

// The ChestX-ray14 vocabulary Hilum starts with: 14 findings and "No Finding".
[[nodiscard]] const std::vector<std::pair<std::string, std::string>>& builtin_findings();

// Why `name` cannot name a finding, or "" when it can. A finding name is written into CSV files
// that spreadsheets open: it cannot begin with a character that starts a formula (= + - @), nor hold
// '|' (the ChestX-ray14 list separator), '=', ',' or control characters.
[[nodiscard]] std::string finding_name_problem(std::string_view name);

// Current UTC time as ISO 8601 with milliseconds ("2026-11-25T12:00:00.123Z").
[[nodiscard]] std::string utc_now();

}  // namespace hilum::app
