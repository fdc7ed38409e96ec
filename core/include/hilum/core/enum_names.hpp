// Hilum core: an enum's names, written once. Each enum that is stored or printed as text (a
// model's status, a job's status, a label's value...) has one table of {enumerator, name}; its
// to_string and its parse are both read from that table, so that the two cannot drift apart.
// Parsing is exact (the stored spelling) and an unknown name is an error the caller reports,
// never a silent default. Header-only.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace hilum::core {

template <typename E>
struct EnumName {
  E value;
  std::string_view name;
};

// The name of `value` in `table`; "" when the table does not list it (a test checks that every
// enumerator is listed).
template <typename E, std::size_t N>
[[nodiscard]] constexpr std::string_view name_of(const EnumName<E> (&table)[N], E value) {
  for (const auto& entry : table) {
    if (entry.value == value) return entry.name;
  }
  return {};
}

// The same name as a C string ("" when the table does not list it): the tables' names are string
// literals, so NUL-terminated.
template <typename E, std::size_t N>
[[nodiscard]] constexpr const char* c_name_of(const EnumName<E> (&table)[N], E value) {
  const std::string_view n = name_of(table, value);
  return n.empty() ? "" : n.data();
}

// The enumerator named exactly `name`, or nothing.
template <typename E, std::size_t N>
[[nodiscard]] constexpr std::optional<E> value_of(const EnumName<E> (&table)[N], std::string_view name) {
  for (const auto& entry : table) {
    if (entry.name == name) return entry.value;
  }
  return std::nullopt;
}

// "unknown WHAT 'NAME' (known: a, b, c)": the message of a refused name. The name is cut to 64
// characters, so that a hostile value cannot flood a message.
template <typename E, std::size_t N>
[[nodiscard]] std::string unknown_name_message(const EnumName<E> (&table)[N], std::string_view what, std::string_view name) {
  std::string out = "unknown " + std::string(what) + " '" + std::string(name.substr(0, 64)) + (name.size() > 64 ? "...'" : "'") +
                    " (known: ";
  for (std::size_t i = 0; i < N; ++i) {
    if (i > 0) out += ", ";
    out += table[i].name;
  }
  return out + ")";
}

}  // namespace hilum::core
