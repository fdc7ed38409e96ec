// DICOMDIR media: the records come back in order with their patient/study/series keys, and the
// referenced files are found (case-insensitively) and read.
#include <gtest/gtest.h>

#include <algorithm>
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

// Issue 16, defect 3: a Referenced File ID that climbs out of the medium (directly or through a
// symbolic link) made Hilum open files outside it. Such references are refused with a reason;
// the other records are listed as usual.
TEST_F(DicomdirTest, ReferencesOutsideTheMediumAreRefused) {
  const fs::path media = path("outer") / "MEDIA";
  const auto uids = td::write_dicomdir_media(media, 2);
  ASSERT_EQ(uids.size(), 4u);
  const fs::path outside = path("outer") / "OUTSIDE";
  fs::create_directories(outside);
  fs::copy_file(media / "IMAGES" / "IM000002", outside / "IM002");
  fs::copy_file(media / "IMAGES" / "IM000003", outside / "IM000003");
  fs::create_directory_symlink(outside, media / "IMAGES" / "LINK");
  const fs::path dicomdir = media / "DICOMDIR";
  td::set_dicomdir_file_id(dicomdir, 0, "..\\..\\..\\..\\..\\..\\etc\\passwd");
  td::set_dicomdir_file_id(dicomdir, 1, "..\\OUTSIDE\\IM002");       // a DICOM file beside the medium
  td::set_dicomdir_file_id(dicomdir, 2, "IMAGES\\LINK\\IM000003");   // out through a symbolic link

  auto listed = dcm::read_dicomdir(dicomdir);
  ASSERT_TRUE(listed.ok()) << describe(listed);
  ASSERT_EQ(listed->size(), 4u);
  const fs::path root = fs::canonical(media);
  const auto inside = [&](const fs::path& p) {
    const fs::path real = fs::weakly_canonical(p);
    const auto [r, q] = std::mismatch(root.begin(), root.end(), real.begin(), real.end());
    return r == root.end() && q != real.end();
  };
  for (std::size_t i = 0; i < 3; ++i) {
    const dcm::DicomdirImage& im = (*listed)[i];
    SCOPED_TRACE("record " + std::to_string(i) + ": " + im.file.string());
    EXPECT_FALSE(im.file_exists && !inside(im.file)) << "a file outside the medium is offered to be opened";
    EXPECT_FALSE(im.file_exists);
    EXPECT_TRUE(im.file.empty());
    EXPECT_NE(im.refused.find(im.file_id), std::string::npos) << im.refused;
    EXPECT_EQ(im.sop_instance_uid, uids[i]);
  }
  EXPECT_EQ((*listed)[0].file_id, "..\\..\\..\\..\\..\\..\\etc\\passwd");
  EXPECT_NE((*listed)[0].refused.find("'..'"), std::string::npos) << (*listed)[0].refused;
  EXPECT_NE((*listed)[2].refused.find("outside the DICOMDIR's folder"), std::string::npos) << (*listed)[2].refused;
  // The rest of the medium is as it was.
  const dcm::DicomdirImage& good = (*listed)[3];
  EXPECT_TRUE(good.refused.empty()) << good.refused;
  EXPECT_TRUE(good.file_exists);
  EXPECT_TRUE(inside(good.file)) << good.file;
  EXPECT_TRUE(fs::equivalent(good.file, media / "IMAGES" / "IM000004"));

  // A medium whose own folder is reached through a symbolic link still works: only what the
  // references lead to, once resolved, must stay inside.
  const fs::path alias = path("alias");
  fs::create_directory_symlink(media, alias);
  auto via_link = dcm::read_dicomdir(alias / "DICOMDIR");
  ASSERT_TRUE(via_link.ok()) << describe(via_link);
  ASSERT_EQ(via_link->size(), 4u);
  EXPECT_TRUE((*via_link)[3].file_exists) << (*via_link)[3].refused;
  EXPECT_FALSE((*via_link)[1].file_exists);
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
