#include "common/tensor.h"

#include <gtest/gtest.h>

#include "common/error.h"

namespace servelab {
namespace {

TEST(Tensor, ZerosIsZeroFilledAndOwned) {
  Tensor t = Tensor::zeros({3, 4});
  ASSERT_EQ(t.numel(), 12);
  for (int i = 0; i < 12; ++i) EXPECT_EQ(t.f32()[i], 0.0f);
  EXPECT_EQ(t.dim(-1), 4);
  EXPECT_EQ(shape_string(t.shape()), "[3, 4]");
}

TEST(Tensor, RowsAndViewsShareStorage) {
  Tensor t = Tensor::zeros({4, 2});
  Tensor middle = t.rows(1, 3);
  middle.f32()[0] = 7.0f;
  EXPECT_EQ(t.f32()[2], 7.0f);
  Tensor flat = t.view({8});
  EXPECT_EQ(flat.f32()[2], 7.0f);
  EXPECT_THROW(t.view({3, 3}), Error);
  EXPECT_THROW(t.rows(2, 5), Error);
}

TEST(Tensor, F32RejectsOtherDtypes) {
  Tensor t = Tensor::zeros({2}, DType::kBF16);
  EXPECT_THROW(t.f32(), Error);
}

}  // namespace
}  // namespace servelab
