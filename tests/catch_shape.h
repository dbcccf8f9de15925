// Prints a Shape in Catch2's failure messages ("b4 s16").
#ifndef KILN_TESTS_CATCH_SHAPE_H_
#define KILN_TESTS_CATCH_SHAPE_H_

#include <catch2/catch.hpp>
#include <string>

#include "common/shape.h"

namespace Catch {
template <>
struct StringMaker<kiln::Shape> {
  static std::string convert(const kiln::Shape& shape) { return shape.Describe(); }
};
}  // namespace Catch

#endif  // KILN_TESTS_CATCH_SHAPE_H_
