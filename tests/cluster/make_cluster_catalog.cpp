// hilum-make-cluster-catalog DB WORKDIR [PATIENTS [RESIZE]]: the labelled catalog of
// labelled_catalog.hpp, for the cluster round trip (tests/cluster/round_trip.py); with RESIZE its
// model crops the centre 32 x 32 of the films resized to RESIZE.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "labelled_catalog.hpp"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: hilum-make-cluster-catalog DB WORKDIR [PATIENTS [RESIZE]]\n");
    return 2;
  }
  const int patients = argc > 3 ? std::atoi(argv[3]) : 20;
  const int resize = argc > 4 ? std::atoi(argv[4]) : 0;
  auto catalog = hilum::app::Catalog::open(argv[1]);
  if (!catalog) {
    std::fprintf(stderr, "%s\n", catalog.error().message.c_str());
    return 1;
  }
  const std::string error = hilum::test::make_labelled_catalog(*catalog, argv[2], patients, 7, resize);
  if (!error.empty()) {
    std::fprintf(stderr, "%s\n", error.c_str());
    return 1;
  }
  return 0;
}
