#include "hilum/app/worklist.hpp"

namespace hilum::app {

// The queries live in the catalog (catalog_worklist.cpp): no SQL outside it.
Result<std::vector<WorklistItem>> worklist(Catalog& catalog, const WorklistQuery& query) { return catalog.worklist(query); }

Result<WorklistCounts> worklist_counts(Catalog& catalog, const WorklistQuery& query) { return catalog.worklist_counts(query); }

Result<LabelActivity> label_activity(Catalog& catalog, std::int64_t after_id) { return catalog.label_activity(after_id); }

}  // namespace hilum::app
