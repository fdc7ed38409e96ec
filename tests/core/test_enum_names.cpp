// core::EnumName tables: one table gives both directions; unknown names and enumerators missing
// from a table are visible, never a default.
#include <gtest/gtest.h>

#include <string>

#include "hilum/core/enum_names.hpp"

namespace hilum::test {
namespace {

enum class Colour { Red, Green, Blue, Unlisted };
constexpr core::EnumName<Colour> kColours[] = {{Colour::Red, "red"}, {Colour::Green, "green"}, {Colour::Blue, "blue"}};

TEST(EnumNames, OneTableGivesBothDirections) {
  for (const Colour c : {Colour::Red, Colour::Green, Colour::Blue}) {
    const auto name = core::name_of(kColours, c);
    ASSERT_FALSE(name.empty());
    EXPECT_EQ(core::value_of(kColours, name), c) << name;
  }
  static_assert(core::name_of(kColours, Colour::Green) == "green");
  static_assert(core::value_of(kColours, "blue") == Colour::Blue);
}

TEST(EnumNames, UnknownNamesAndUnlistedEnumeratorsAreVisible) {
  EXPECT_FALSE(core::value_of(kColours, "purple").has_value());
  EXPECT_FALSE(core::value_of(kColours, "Red").has_value());  // exact: the stored spelling only
  EXPECT_FALSE(core::value_of(kColours, "").has_value());
  EXPECT_TRUE(core::name_of(kColours, Colour::Unlisted).empty());
  EXPECT_EQ(core::unknown_name_message(kColours, "colour", "purple"), "unknown colour 'purple' (known: red, green, blue)");
  const std::string flood(1000, 'x');
  const std::string message = core::unknown_name_message(kColours, "colour", flood);
  EXPECT_LT(message.size(), 120u) << message;
  EXPECT_NE(message.find(std::string(64, 'x') + "...'"), std::string::npos) << message;
}

}  // namespace
}  // namespace hilum::test
