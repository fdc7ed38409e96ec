// DICOMDIR media: the records come back in order with their patient/study/series keys, and the
// referenced files are found (case-insensitively) and read.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "hilum/dicom/dicomdir.hpp"
#include "support.hpp"

namespace hilum::test {
namespace {

class DicomdirTest : public TempDirTest {};

TEST_F(DicomdirTest, ListsEveryImageInOrder) {
  const fs::path media = path("DIR");
  const std::vector<std::string> uids = td::write_dicomdir_media(media, 2);
  ASSERT_EQ(uids.size(), 4u);

  auto listed = dcm::read_dicomdir(media / "DICOMDIR");
  ASSERT_TRUE(listed.ok()) << describe(listed);
  const auto& images = listed.value();
  ASSERT_EQ(images.size(), uids.size());

  const char* patients[] = {"PHANTOM-A", "PHANTOM-A", "PHANTOM-B", "PHANTOM-B"};
  const char* names[] = {"Phantom^Alpha", "Phantom^Alpha", "Phantom^Beta", "Phantom^Beta"};
  for (std::size_t i = 0; i < images.size(); ++i) {
    const dcm::DicomdirImage& im = images[i];
    SCOPED_TRACE("record " + std::to_string(i));
    EXPECT_EQ(im.sop_instance_uid, uids[i]);
    EXPECT_EQ(im.patient_id, patients[i]);
    EXPECT_EQ(im.patient_name, names[i]);
    EXPECT_EQ(im.instance_number, std::to_string(i % 2 + 1));
    EXPECT_EQ(im.series_number, "1");
    EXPECT_EQ(im.modality, "DX");
    EXPECT_FALSE(im.study_instance_uid.empty());
    EXPECT_FALSE(im.series_instance_uid.empty());
    // Resolved, absolute, existing, and the file write_dicomdir_media wrote.
    EXPECT_TRUE(im.file_exists) << im.file;
    EXPECT_TRUE(im.file.is_absolute()) << im.file;
    ASSERT_TRUE(fs::exists(im.file)) << im.file;
    char name[32];
    std::snprintf(name, sizeof name, "IM%06u", static_cast<unsigned>(i + 1));
    EXPECT_TRUE(fs::equivalent(im.file, media / "IMAGES" / name)) << im.file;

    // Each referenced file reads, and is the instance the record says.
    auto r = dcm::read_radiograph(im.file);
    ASSERT_TRUE(r.ok()) << describe(r);
    EXPECT_EQ(r->meta.sop_instance_uid, im.sop_instance_uid);
    EXPECT_EQ(r->meta.study_instance_uid, im.study_instance_uid);
    EXPECT_EQ(r->meta.series_instance_uid, im.series_instance_uid);
    EXPECT_EQ(r->meta.patient_id, im.patient_id);
    EXPECT_EQ(r->stored.size(), r->pixel_count());
  }
  // One study and one series per patient: shared within a patient, different across patients.
  EXPECT_EQ(images[0].study_instance_uid, images[1].study_instance_uid);
  EXPECT_EQ(images[0].series_instance_uid, images[1].series_instance_uid);
  EXPECT_EQ(images[2].study_instance_uid, images[3].study_instance_uid);
  EXPECT_NE(images[0].study_instance_uid, images[2].study_instance_uid);
  EXPECT_NE(images[0].series_instance_uid, images[2].series_instance_uid);
  EXPECT_EQ(images[0].study_date, "20260101");
  EXPECT_EQ(images[2].study_date, "20260102");
  EXPECT_EQ(images[0].study_description, "Chest PA");
  EXPECT_EQ(images[0].accession_number, "ACC-0001");
}

TEST_F(DicomdirTest, MoreImagesPerSeries) {
  const fs::path media = path("MEDIA");
  const auto uids = td::write_dicomdir_media(media, 5);
  auto listed = dcm::read_dicomdir(media / "DICOMDIR");
  ASSERT_TRUE(listed.ok()) << describe(listed);
  ASSERT_EQ(listed->size(), 10u);
  for (std::size_t i = 0; i < uids.size(); ++i) EXPECT_EQ((*listed)[i].sop_instance_uid, uids[i]) << i;
}

TEST_F(DicomdirTest, ResolvesFileIdsCaseInsensitively) {
  // Media written on one system, copied to another that lowercased the names.
  const fs::path media = path("DIR");
  const auto uids = td::write_dicomdir_media(media, 1);
  fs::rename(media / "IMAGES" / "IM000001", media / "IMAGES" / "im000001");
  fs::rename(media / "IMAGES", media / "images");
  auto listed = dcm::read_dicomdir(media / "DICOMDIR");
  ASSERT_TRUE(listed.ok()) << describe(listed);
  ASSERT_EQ(listed->size(), 2u);
  EXPECT_TRUE((*listed)[0].file_exists) << (*listed)[0].file;
  EXPECT_TRUE(fs::equivalent((*listed)[0].file, media / "images" / "im000001")) << (*listed)[0].file;
  EXPECT_TRUE((*listed)[1].file_exists) << (*listed)[1].file;
}

TEST_F(DicomdirTest, MissingReferencedFileIsReportedNotFatal) {
  const fs::path media = path("DIR");
  const auto uids = td::write_dicomdir_media(media, 2);
  fs::remove(media / "IMAGES" / "IM000002");
  auto listed = dcm::read_dicomdir(media / "DICOMDIR");
  ASSERT_TRUE(listed.ok()) << describe(listed);
  ASSERT_EQ(listed->size(), 4u);
  EXPECT_TRUE((*listed)[0].file_exists);
  EXPECT_FALSE((*listed)[1].file_exists);
  EXPECT_EQ((*listed)[1].sop_instance_uid, uids[1]);
  EXPECT_TRUE((*listed)[2].file_exists);
}

TEST_F(DicomdirTest, IsDicomdirTellsDirectoriesFromImages) {
  const fs::path media = path("DIR");
  (void)td::write_dicomdir_media(media, 1);
  EXPECT_TRUE(dcm::is_dicomdir(media / "DICOMDIR"));
  EXPECT_FALSE(dcm::is_dicomdir(media / "IMAGES" / "IM000001"));
  EXPECT_FALSE(dcm::is_dicomdir(path("missing")));
  const fs::path text = path("notes.txt");
  td::write_not_dicom(text);
  EXPECT_FALSE(dcm::is_dicomdir(text));

  // read_dicomdir refuses an image; read_radiograph refuses the DICOMDIR (no pixel data).
  auto d = dcm::read_dicomdir(media / "IMAGES" / "IM000001");
  EXPECT_FALSE(d.ok());
  auto r = dcm::read_radiograph(media / "DICOMDIR");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, dcm::ErrorKind::NotAnImage) << describe(r);
  auto missing = dcm::read_dicomdir(path("nothing-here"));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().kind, dcm::ErrorKind::FileNotFound) << describe(missing);
}

}  // namespace
}  // namespace hilum::test
