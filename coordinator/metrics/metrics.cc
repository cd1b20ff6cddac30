#include "coordinator/metrics/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>

namespace switchyard::metrics {
namespace {

void AtomicAdd(std::atomic<double>* a, double v) {
  double cur = a->load(std::memory_order_relaxed);
  while (!a->compare_exchange_weak(cur, cur + v, std::memory_order_relaxed)) {
  }
}

bool ValidLabelName(const std::string& n) {
  if (n.empty() || (n[0] >= '0' && n[0] <= '9')) return false;
  if (n.size() >= 2 && n[0] == '_' && n[1] == '_') return false;
  return std::all_of(n.begin(), n.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  });
}

const char* TypeName(MetricType t) {
  switch (t) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

// `{a="x",b="y"}` (with an optional extra label appended), or "" when there are no labels.
std::string LabelText(const std::vector<std::string>& names, const std::vector<std::string>& values,
                      const char* extra_name = nullptr, const std::string& extra_value = "") {
  if (names.empty() && extra_name == nullptr) return "";
  std::string out = "{";
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += ',';
    out += names[i] + "=\"" + EscapeLabelValue(values[i]) + "\"";
  }
  if (extra_name != nullptr) {
    if (!names.empty()) out += ',';
    out += std::string(extra_name) + "=\"" + EscapeLabelValue(extra_value) + "\"";
  }
  return out + "}";
}

void RenderSeries(const std::string& name, const std::string& labels, const Counter& c,
                  std::string* out) {
  *out += name + labels + " " + FormatValue(c.Value()) + "\n";
}
void RenderSeries(const std::string& name, const std::string& labels, const Gauge& g,
                  std::string* out) {
  *out += name + labels + " " + FormatValue(g.Value()) + "\n";
}

}  // namespace

void Counter::Inc(double v) {
  if (!(v >= 0.0)) return;  // negative or NaN
  AtomicAdd(&value_, v);
}

void Gauge::Inc(double v) { AtomicAdd(&value_, v); }

Histogram::Histogram(const std::vector<double>& bounds)
    : bounds_(bounds), buckets_(new std::atomic<uint64_t>[bounds.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) buckets_[i].store(0, std::memory_order_relaxed);
}

void Histogram::Observe(double v) {
  if (std::isnan(v)) return;
  size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin();
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  AtomicAdd(&sum_, v);
}

Histogram::Snapshot Histogram::Take() const {
  Snapshot s;
  s.bounds = bounds_;
  s.cumulative.resize(bounds_.size() + 1);
  uint64_t running = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    running += buckets_[i].load(std::memory_order_relaxed);
    s.cumulative[i] = running;
  }
  s.count = running;
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

template <typename T>
StatusOr<T*> Family<T>::WithLabels(const std::vector<std::string>& label_values) {
  if (label_values.size() != label_names_.size()) {
    return InvalidArgumentError("metric " + name_ + ": got " + std::to_string(label_values.size()) +
                                " label values for " + std::to_string(label_names_.size()) +
                                " label names");
  }
  std::lock_guard<std::mutex> lock(mu_);
  auto it = series_.find(label_values);
  if (it != series_.end()) return it->second.get();
  std::unique_ptr<T> series;
  if constexpr (std::is_same_v<T, Histogram>) {
    series = std::make_unique<Histogram>(bounds_);
  } else {
    series = std::make_unique<T>();
  }
  T* ptr = series.get();
  series_.emplace(label_values, std::move(series));
  return ptr;
}

template <typename T>
void Family<T>::Render(MetricType type, std::string* out) const {
  *out += "# HELP " + name_ + " " + EscapeHelp(help_) + "\n";
  *out += "# TYPE " + name_ + " " + TypeName(type) + "\n";
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [values, series] : series_) {
    if constexpr (std::is_same_v<T, Histogram>) {
      Histogram::Snapshot s = series->Take();
      for (size_t i = 0; i <= s.bounds.size(); ++i) {
        std::string le = i < s.bounds.size() ? FormatValue(s.bounds[i]) : "+Inf";
        *out += name_ + "_bucket" + LabelText(label_names_, values, "le", le) + " " +
                std::to_string(s.cumulative[i]) + "\n";
      }
      std::string labels = LabelText(label_names_, values);
      *out += name_ + "_sum" + labels + " " + FormatValue(s.sum) + "\n";
      *out += name_ + "_count" + labels + " " + std::to_string(s.count) + "\n";
    } else {
      RenderSeries(name_, LabelText(label_names_, values), *series, out);
    }
  }
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

StatusOr<Registry::Entry*> Registry::AddEntry(MetricType type, const std::string& raw_name,
                                              const std::string& help,
                                              const std::vector<std::string>& label_names,
                                              const std::vector<double>& raw_bounds) {
  if (raw_name.empty()) return InvalidArgumentError("metric name is empty");
  const std::string name = SanitizeMetricName(raw_name);
  for (size_t i = 0; i < label_names.size(); ++i) {
    const std::string& l = label_names[i];
    if (!ValidLabelName(l)) {
      return InvalidArgumentError("metric " + name + ": invalid label name '" + l +
                                  "' (want [a-zA-Z_][a-zA-Z0-9_]*, not starting with __)");
    }
    if (type == MetricType::kHistogram && l == "le") {
      return InvalidArgumentError("metric " + name + ": label name 'le' is reserved for buckets");
    }
    if (std::find(label_names.begin(), label_names.begin() + i, l) != label_names.begin() + i) {
      return InvalidArgumentError("metric " + name + ": duplicate label name '" + l + "'");
    }
  }
  std::vector<double> bounds = raw_bounds;
  if (!bounds.empty() && std::isinf(bounds.back()) && bounds.back() > 0) bounds.pop_back();
  for (size_t i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1]))) {
      return InvalidArgumentError("metric " + name + ": histogram bound " + std::to_string(i) +
                                  " (" + FormatValue(bounds[i]) +
                                  ") is not finite and strictly above the previous one");
    }
  }

  std::lock_guard<std::mutex> lock(mu_);
  for (auto& e : entries_) {
    const std::string& existing = e->counter ? e->counter->name()
                                  : e->gauge ? e->gauge->name()
                                             : e->histogram->name();
    if (existing != name) continue;
    bool same = e->type == type;
    if (same && e->counter) same = e->counter->label_names() == label_names;
    if (same && e->gauge) same = e->gauge->label_names() == label_names;
    if (same && e->histogram) {
      same = e->histogram->label_names() == label_names && e->histogram->bounds_ == bounds;
    }
    if (!same) {
      return Status(StatusCode::kAlreadyExists,
                    "metric " + name +
                        " is already registered with another type, labels or "
                        "buckets");
    }
    return e.get();
  }
  auto entry = std::make_unique<Entry>();
  entry->type = type;
  switch (type) {
    case MetricType::kCounter:
      entry->counter.reset(new CounterFamily(name, help, label_names, {}));
      break;
    case MetricType::kGauge:
      entry->gauge.reset(new GaugeFamily(name, help, label_names, {}));
      break;
    case MetricType::kHistogram:
      entry->histogram.reset(new HistogramFamily(name, help, label_names, bounds));
      break;
  }
  entries_.push_back(std::move(entry));
  return entries_.back().get();
}

StatusOr<CounterFamily*> Registry::AddCounter(const std::string& name, const std::string& help,
                                              const std::vector<std::string>& label_names) {
  ASSIGN_OR_RETURN(Entry * e, AddEntry(MetricType::kCounter, name, help, label_names, {}));
  return e->counter.get();
}

StatusOr<GaugeFamily*> Registry::AddGauge(const std::string& name, const std::string& help,
                                          const std::vector<std::string>& label_names) {
  ASSIGN_OR_RETURN(Entry * e, AddEntry(MetricType::kGauge, name, help, label_names, {}));
  return e->gauge.get();
}

StatusOr<HistogramFamily*> Registry::AddHistogram(const std::string& name, const std::string& help,
                                                  const std::vector<double>& bounds,
                                                  const std::vector<std::string>& label_names) {
  ASSIGN_OR_RETURN(Entry * e, AddEntry(MetricType::kHistogram, name, help, label_names, bounds));
  return e->histogram.get();
}

std::string Registry::RenderPrometheus() const {
  std::string out;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& e : entries_) {
    if (e->counter) e->counter->Render(e->type, &out);
    if (e->gauge) e->gauge->Render(e->type, &out);
    if (e->histogram) e->histogram->Render(e->type, &out);
  }
  return out;
}

std::string SanitizeMetricName(const std::string& name) {
  std::string out;
  out.reserve(name.size() + 1);
  if (!name.empty() && name[0] >= '0' && name[0] <= '9') out += '_';
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == ':';
    out += ok ? c : '_';
  }
  return out;
}

std::string EscapeLabelValue(const std::string& value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string EscapeHelp(const std::string& help) {
  std::string out;
  out.reserve(help.size());
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, res.ptr);
}

StatusOr<std::vector<double>> LinearBuckets(double start, double width, int count) {
  if (count < 1 || !(width > 0) || !std::isfinite(start) || !std::isfinite(width)) {
    return InvalidArgumentError("LinearBuckets: need count >= 1 and finite width > 0, got start " +
                                FormatValue(start) + ", width " + FormatValue(width) + ", count " +
                                std::to_string(count));
  }
  std::vector<double> out(count);
  for (int i = 0; i < count; ++i) out[i] = start + width * i;
  return out;
}

StatusOr<std::vector<double>> ExponentialBuckets(double start, double factor, int count) {
  if (count < 1 || !(start > 0) || !(factor > 1) || !std::isfinite(start) ||
      !std::isfinite(factor)) {
    return InvalidArgumentError(
        "ExponentialBuckets: need count >= 1, start > 0 and factor > 1, got start " +
        FormatValue(start) + ", factor " + FormatValue(factor) + ", count " +
        std::to_string(count));
  }
  std::vector<double> out(count);
  double b = start;
  for (int i = 0; i < count; ++i, b *= factor) out[i] = b;
  return out;
}

}  // namespace switchyard::metrics
