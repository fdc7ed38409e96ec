// The names of the catalog's enums, one table each: the spelling stored in the catalog (and
// printed in JSON), read back exactly. These strings are the stored values: never rename one
// (old catalogs hold them, and the schema's CHECK constraints list them).
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "hilum/app/catalog.hpp"
#include "hilum/core/enum_names.hpp"
#include "hilum/core/text.hpp"

namespace hilum::app {
namespace {

using core::EnumName;

constexpr EnumName<LabelValue> kLabelValues[] = {
    {LabelValue::Present, "present"}, {LabelValue::Absent, "absent"},
    {LabelValue::Uncertain, "uncertain"}, {LabelValue::Cleared, "cleared"}};
// Synonyms a person or a CSV may use for a label value (not stored).
constexpr EnumName<LabelValue> kLabelValueSynonyms[] = {
    {LabelValue::Present, "1"},    {LabelValue::Present, "yes"},      {LabelValue::Present, "positive"},
    {LabelValue::Absent, "0"},     {LabelValue::Absent, "no"},        {LabelValue::Absent, "negative"},
    {LabelValue::Uncertain, "-1"}, {LabelValue::Uncertain, "?"},      {LabelValue::Cleared, "clear"},
    {LabelValue::Cleared, "none"}};
constexpr EnumName<LabelKind> kLabelKinds[] = {{LabelKind::Reading, "reading"}, {LabelKind::Adjudication, "adjudication"}};
constexpr EnumName<LabelSource> kLabelSources[] = {
    {LabelSource::Cli, "cli"}, {LabelSource::Csv, "csv"}, {LabelSource::Gui, "gui"}, {LabelSource::Adjudication, "adjudication"}};
constexpr EnumName<ConsensusPolicy::Rule> kConsensusRules[] = {{ConsensusPolicy::Rule::Majority, "majority"},
                                                               {ConsensusPolicy::Rule::Unanimous, "unanimous"}};
constexpr EnumName<Blinding> kBlindings[] = {{Blinding::Off, "off"}, {Blinding::Labels, "labels"}, {Blinding::LabelsAndAi, "labels+ai"}};
constexpr EnumName<Blinding> kBlindingSynonyms[] = {{Blinding::Off, "none"}, {Blinding::Labels, "on"}, {Blinding::LabelsAndAi, "all"}};
constexpr EnumName<JobStatus> kJobStatuses[] = {{JobStatus::Running, "running"}, {JobStatus::Interrupted, "interrupted"},
                                                {JobStatus::Done, "done"}, {JobStatus::Failed, "failed"}};
constexpr EnumName<JobItemStatus> kJobItemStatuses[] = {
    {JobItemStatus::Pending, "pending"},   {JobItemStatus::Imported, "imported"}, {JobItemStatus::Present, "present"},
    {JobItemStatus::Conflict, "conflict"}, {JobItemStatus::Skipped, "skipped"},   {JobItemStatus::NotDicom, "not-dicom"},
    {JobItemStatus::Failed, "failed"}};
constexpr EnumName<ModelStatus> kModelStatuses[] = {
    {ModelStatus::Active, "active"}, {ModelStatus::Candidate, "candidate"}, {ModelStatus::Retired, "retired"}};

template <typename E, std::size_t N>
const char* name(const EnumName<E> (&table)[N], E value) {
  return core::c_name_of(table, value);
}

template <typename E, std::size_t N>
Result<E> parse(const EnumName<E> (&table)[N], std::string_view what, std::string_view s) {
  if (auto v = core::value_of(table, s)) return *v;
  return Error{ErrorKind::Invalid, core::unknown_name_message(table, what, s)};
}

// What a person typed: a stored name or a synonym, in any case.
template <typename E, std::size_t N, std::size_t M>
std::optional<E> typed(const EnumName<E> (&names)[N], const EnumName<E> (&synonyms)[M], const std::string& s) {
  const std::string v = core::lower(s);
  if (auto exact = core::value_of(names, v)) return exact;
  return core::value_of(synonyms, v);
}

}  // namespace

const char* to_string(LabelValue v) { return name(kLabelValues, v); }
Result<LabelValue> label_value_from_string(std::string_view s) { return parse(kLabelValues, "label value", s); }
std::optional<LabelValue> parse_label_value(const std::string& s) { return typed(kLabelValues, kLabelValueSynonyms, s); }

const char* to_string(LabelKind k) { return name(kLabelKinds, k); }
Result<LabelKind> label_kind_from_string(std::string_view s) { return parse(kLabelKinds, "label kind", s); }

const char* to_string(LabelSource s) { return name(kLabelSources, s); }
Result<LabelSource> label_source_from_string(std::string_view s) { return parse(kLabelSources, "label source", s); }

const char* to_string(ConsensusPolicy::Rule r) { return name(kConsensusRules, r); }
Result<ConsensusPolicy::Rule> consensus_rule_from_string(std::string_view s) { return parse(kConsensusRules, "consensus rule", s); }

const char* to_string(Blinding b) { return name(kBlindings, b); }
Result<Blinding> blinding_from_string(std::string_view s) { return parse(kBlindings, "blinding mode", s); }
std::optional<Blinding> parse_blinding(const std::string& s) { return typed(kBlindings, kBlindingSynonyms, s); }

const char* to_string(JobStatus s) { return name(kJobStatuses, s); }
Result<JobStatus> job_status_from_string(std::string_view s) { return parse(kJobStatuses, "job status", s); }

const char* to_string(JobItemStatus s) { return name(kJobItemStatuses, s); }
Result<JobItemStatus> job_item_status_from_string(std::string_view s) { return parse(kJobItemStatuses, "job item status", s); }

const char* to_string(ModelStatus s) { return name(kModelStatuses, s); }
Result<ModelStatus> model_status_from_string(std::string_view s) { return parse(kModelStatuses, "model status", s); }

}  // namespace hilum::app
