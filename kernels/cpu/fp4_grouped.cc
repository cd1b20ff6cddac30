#include "kernels/cpu/fp4_grouped.h"

#include <omp.h>

#include <algorithm>
#include <string>
#include <utility>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/fp4_internal.h"
#include "kernels/cpu/fp4_panel_kernel.h"

namespace switchyard::cpu {

using fp4_internal::PreparedActs;

namespace {
struct RowItem {  // rows [r0, r1) of one expert's weight
  int64_t expert, r0, r1;
};
}  // namespace

struct Fp4GroupedWorkspace::Impl {
  std::vector<PreparedActs> in, mid;  // per expert: activations for gate/up, for down
  std::vector<float> h, u;            // [rows, inter] per expert at h_offset
  std::vector<int64_t> h_offset;
  std::vector<std::pair<int64_t, int64_t>> prep_items, mid_prep_items;  // (expert, first token)
  std::vector<RowItem> up_items, down_items;
  std::vector<char> packed;  // per expert: gate/up write `mid` directly (PanelRowsSwiGluPacked)
  // Per OpenMP thread (grow-only): the panel path's packed weights and partial results, ~1 MB
  // each, kept across calls so that no call pays for fresh pages.
  std::vector<std::vector<float>> scratch;
};

Fp4GroupedWorkspace::Fp4GroupedWorkspace() : impl_(std::make_unique<Impl>()) {}
Fp4GroupedWorkspace::~Fp4GroupedWorkspace() = default;

namespace {

constexpr int64_t kPrepTokens = 16;  // tokens per activation-preparation item (one panel block)

Status Validate(const std::vector<Fp4ExpertMlp>& experts, const std::vector<int64_t>& offsets,
                int64_t hidden) {
  if (offsets.size() != experts.size() + 1 || offsets[0] != 0) {
    return InvalidArgumentError("Fp4GroupedMlp: offsets must have num_experts + 1 = " +
                                std::to_string(experts.size() + 1) + " entries starting at 0");
  }
  for (size_t e = 0; e < experts.size(); ++e) {
    const std::string where = "Fp4GroupedMlp: expert " + std::to_string(e);
    if (offsets[e + 1] < offsets[e]) return InvalidArgumentError(where + ": offsets decrease");
    if (offsets[e + 1] == offsets[e]) continue;
    const Fp4ExpertMlp& x = experts[e];
    if (x.gate == nullptr || x.up == nullptr || x.down == nullptr) {
      return InvalidArgumentError(where + " has tokens but no gate/up/down FP4 weights");
    }
    const int64_t inter = x.gate->rows;
    if (x.gate->cols != hidden || x.up->cols != hidden || x.up->rows != inter ||
        x.down->cols != inter || x.down->rows != hidden || x.up->format != x.gate->format) {
      return InvalidArgumentError(where + ": shapes gate [" + std::to_string(x.gate->rows) + ", " +
                                  std::to_string(x.gate->cols) + "], up [" +
                                  std::to_string(x.up->rows) + ", " + std::to_string(x.up->cols) +
                                  "], down [" + std::to_string(x.down->rows) + ", " +
                                  std::to_string(x.down->cols) + "] do not fit hidden " +
                                  std::to_string(hidden) + " (or gate/up formats differ)");
    }
  }
  return OkStatus();
}

// Splits `rows` into items of about `target` rows whose boundaries are multiples of `unit` (the
// last item ends at `rows`), as even as the units allow: no small ragged remainder item (768 rows
// in 96-row items: 8 x 96, not 6 x 126 + 12).
void SplitRows(int64_t expert, int64_t rows, int64_t unit, int64_t target,
               std::vector<RowItem>* items) {
  const int64_t units = (rows + unit - 1) / unit;
  const int64_t n = std::clamp<int64_t>((units * unit + target / 2) / target, 1, units);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r0 = std::min(rows, unit * (units * i / n));
    const int64_t r1 = std::min(rows, unit * (units * (i + 1) / n));
    if (r1 > r0) items->push_back({expert, r0, r1});
  }
}

// Row items of a weight with `rows` rows for activations `a`: 64 rows (int8 path), about
// kPanelRows in whole register tiles (panel path), or whole 32-row units of about 96 rows when
// gate/up write the down projection's packed activations (whole NVFP4 / MXFP4 blocks of its k;
// 96 = 16 register tiles; 768, 1536 and 2304 split without padding rows).
void AddItems(int64_t expert, int64_t rows, const PreparedActs& a, bool packed,
              std::vector<RowItem>* items) {
  if (!a.panel) {
    SplitRows(expert, rows, fp4_internal::kSmallRowsPerItem, fp4_internal::kSmallRowsPerItem,
              items);
  } else if (packed) {
    SplitRows(expert, rows, 32, 96, items);
  } else {
    SplitRows(expert, rows, fp4_internal::kPanelMr, fp4_internal::kPanelRows, items);
  }
}

}  // namespace

Status Fp4GroupedMlp(const std::vector<Fp4ExpertMlp>& experts, const std::vector<int64_t>& offsets,
                     const float* x, int64_t hidden, float* out, Fp4Activations act,
                     Fp4GroupedWorkspace* workspace) {
  RETURN_IF_ERROR(Validate(experts, offsets, hidden));
  Fp4GroupedWorkspace::Impl& ws = workspace->impl();
  const size_t n = experts.size();
  ws.in.resize(n);
  ws.mid.resize(n);
  ws.packed.assign(n, 0);
  ws.h_offset.assign(n + 1, 0);
  ws.prep_items.clear();
  ws.mid_prep_items.clear();
  ws.up_items.clear();
  ws.down_items.clear();
  for (size_t e = 0; e < n; ++e) {
    const int64_t m = offsets[e + 1] - offsets[e];
    ws.h_offset[e + 1] = ws.h_offset[e];
    if (m == 0) continue;
    const Fp4ExpertMlp& mlp = experts[e];
    fp4_internal::ResizeActs(m, *mlp.gate, act, &ws.in[e]);
    fp4_internal::ResizeActs(m, *mlp.down, act, &ws.mid[e]);
    ws.packed[e] = fp4_internal::PanelSwiGluPackable(ws.in[e], *mlp.down);
    for (int64_t t = 0; t < m; t += kPrepTokens) {
      ws.prep_items.emplace_back(e, t);
      if (!ws.packed[e]) ws.mid_prep_items.emplace_back(e, t);
    }
    if (!ws.packed[e]) ws.h_offset[e + 1] += m * mlp.gate->rows;  // token-major h, u
    AddItems(e, mlp.gate->rows, ws.in[e], ws.packed[e], &ws.up_items);
    AddItems(e, hidden, ws.mid[e], false, &ws.down_items);
  }
  if (ws.up_items.empty()) return OkStatus();
  if (static_cast<int64_t>(ws.h.size()) < ws.h_offset[n]) {
    ws.h.resize(ws.h_offset[n]);
    ws.u.resize(ws.h_offset[n]);
  }
  const int64_t prep = static_cast<int64_t>(ws.prep_items.size());
  const int64_t mid_prep = static_cast<int64_t>(ws.mid_prep_items.size());
  const int64_t ups = static_cast<int64_t>(ws.up_items.size());
  const int64_t downs = static_cast<int64_t>(ws.down_items.size());
  const size_t threads = static_cast<size_t>(omp_get_max_threads());
  if (ws.scratch.size() < threads) ws.scratch.resize(threads);
#pragma omp parallel
  {
    std::vector<float>& scratch = ws.scratch[omp_get_thread_num()];
#pragma omp for schedule(dynamic, 1)
    for (int64_t i = 0; i < prep; ++i) {
      const auto [e, t0] = ws.prep_items[i];
      const int64_t m = offsets[e + 1] - offsets[e];
      fp4_internal::PreparePanelTokens(x + offsets[e] * hidden, hidden, t0,
                                       std::min(m, t0 + kPrepTokens), *experts[e].gate, &ws.in[e]);
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t i = 0; i < ups; ++i) {
      const auto [e, r0, r1] = ws.up_items[i];
      const Fp4ExpertMlp& mlp = experts[e];
      const int64_t inter = mlp.gate->rows, m = offsets[e + 1] - offsets[e];
      if (ws.packed[e]) {  // SwiGLU written straight into the down projection's activations
        fp4_internal::PanelRowsSwiGluPacked(ws.in[e].xf.data(), m, *mlp.gate, *mlp.up, r0, r1,
                                            *mlp.down, &ws.mid[e], &scratch);
        continue;
      }
      float* h = ws.h.data() + ws.h_offset[e];
      float* u = ws.u.data() + ws.h_offset[e];
      if (ws.in[e].panel) {  // SwiGLU fused into the panel's write of h
        fp4_internal::PanelRowsSwiGlu(ws.in[e].xf.data(), m, *mlp.gate, *mlp.up, r0, r1, h, inter,
                                      &scratch);
        continue;
      }
      fp4_internal::ComputeRowsPair(ws.in[e], *mlp.gate, *mlp.up, r0, r1, h, u, inter, &scratch);
      for (int64_t t = 0; t < m; ++t) {
        SiluMul(h + t * inter + r0, u + t * inter + r0, r1 - r0, h + t * inter + r0);
      }
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t i = 0; i < mid_prep; ++i) {
      const auto [e, t0] = ws.mid_prep_items[i];
      const int64_t m = offsets[e + 1] - offsets[e], inter = experts[e].gate->rows;
      fp4_internal::PreparePanelTokens(ws.h.data() + ws.h_offset[e], inter, t0,
                                       std::min(m, t0 + kPrepTokens), *experts[e].down, &ws.mid[e]);
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t i = 0; i < downs; ++i) {
      const auto [e, r0, r1] = ws.down_items[i];
      fp4_internal::ComputeRows(ws.mid[e], *experts[e].down, r0, r1, out + offsets[e] * hidden,
                                hidden, &scratch);
    }
  }
  return OkStatus();
}

}  // namespace switchyard::cpu
