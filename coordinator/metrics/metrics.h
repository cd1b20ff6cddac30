// Metrics registry and Prometheus text exposition (format 0.0.4).
//
// A Registry owns metric families (counter, gauge, histogram); a family owns series, one per set
// of label values. Creating a family or a series takes a mutex; the returned Counter / Gauge /
// Histogram pointers are stable for the registry's lifetime and their hot-path operations are
// lock-free atomics, so callers look a series up once and keep the pointer.
//
// Usage:
//   Registry registry;
//   auto fam = registry.AddCounter("switchyard:prompt_tokens_total", "Prompt tokens.",
//                                  {"model_name"});
//   Counter* c = (*fam)->WithLabels({"tiny"}).value();
//   c->Inc(17);
//   std::string text = registry.RenderPrometheus();  // body of GET /metrics
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/status.h"

namespace switchyard::metrics {

// A monotonically increasing value (counts, bytes, seconds). Thread-safe, lock-free.
class Counter {
 public:
  // Adds `v` (default 1). Negative or NaN `v` is ignored (counters never go down).
  void Inc(double v = 1.0);
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// A value that goes up and down (queue lengths, usage fractions). Thread-safe, lock-free.
class Gauge {
 public:
  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  void Inc(double v = 1.0);
  void Dec(double v = 1.0) { Inc(-v); }
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// Observations counted into fixed buckets (upper bounds given at registration; +Inf implicit).
// Thread-safe, lock-free: one atomic add per bucket counter, one CAS loop for the sum.
class Histogram {
 public:
  // `bounds`: strictly increasing finite upper bounds (validated by Registry::AddHistogram).
  explicit Histogram(const std::vector<double>& bounds);

  // Counts `v` into the first bucket with v <= bound (or +Inf). NaN is ignored.
  void Observe(double v);

  struct Snapshot {
    std::vector<double> bounds;        // finite upper bounds, ascending
    std::vector<uint64_t> cumulative;  // bounds.size() + 1 entries; the last is +Inf
    double sum = 0.0;
    uint64_t count = 0;  // == cumulative.back()
  };
  // A consistent-enough copy for rendering: `count` is derived from the bucket counts, so the
  // +Inf bucket always equals `_count` even while other threads observe.
  Snapshot Take() const;

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // bounds_.size() + 1, non-cumulative
  std::atomic<double> sum_{0.0};
};

enum class MetricType { kCounter, kGauge, kHistogram };

// One metric family: a name, help text, type, label names and its series. Created only through
// Registry. Thread-safe.
template <typename T>
class Family {
 public:
  // Returns the series for `label_values` (one per label name, same order), creating it on first
  // use (takes the family mutex). The pointer stays valid while the registry lives.
  // Errors: InvalidArgument when the number of values differs from the number of label names.
  StatusOr<T*> WithLabels(const std::vector<std::string>& label_values);

  const std::string& name() const { return name_; }
  const std::vector<std::string>& label_names() const { return label_names_; }

 private:
  friend class Registry;
  Family(std::string name, std::string help, std::vector<std::string> label_names,
         std::vector<double> bounds)
      : name_(std::move(name)),
        help_(std::move(help)),
        label_names_(std::move(label_names)),
        bounds_(std::move(bounds)) {}
  void Render(MetricType type, std::string* out) const;

  std::string name_, help_;
  std::vector<std::string> label_names_;
  std::vector<double> bounds_;  // histograms only
  mutable std::mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<T>> series_;  // sorted by label values
};

using CounterFamily = Family<Counter>;
using GaugeFamily = Family<Gauge>;
using HistogramFamily = Family<Histogram>;

// Owns all families. Thread-safe: registration and rendering take the registry mutex; series
// updates take no registry lock. Families are rendered in registration order, series sorted by
// label values.
class Registry {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Registers a family, or returns the existing one when the name is already registered with the
  // same type, label names (and bounds). `name` is sanitised (SanitizeMetricName); label names
  // must match [a-zA-Z_][a-zA-Z0-9_]*, not start with "__", be unique ("le" is reserved for
  // histograms). Errors: InvalidArgument (bad/duplicate label name, bad bounds, empty name),
  // AlreadyExists (same name, different type/labels/bounds).
  StatusOr<CounterFamily*> AddCounter(const std::string& name, const std::string& help,
                                      const std::vector<std::string>& label_names = {});
  StatusOr<GaugeFamily*> AddGauge(const std::string& name, const std::string& help,
                                  const std::vector<std::string>& label_names = {});
  // `bounds`: strictly increasing, finite (a trailing +Inf is accepted and dropped), may be empty.
  StatusOr<HistogramFamily*> AddHistogram(const std::string& name, const std::string& help,
                                          const std::vector<double>& bounds,
                                          const std::vector<std::string>& label_names = {});

  // All families in the Prometheus text exposition format 0.0.4 (Content-Type
  // "text/plain; version=0.0.4; charset=utf-8"): "# HELP", "# TYPE", then one line per sample.
  std::string RenderPrometheus() const;

 private:
  struct Entry {
    MetricType type;
    std::unique_ptr<CounterFamily> counter;
    std::unique_ptr<GaugeFamily> gauge;
    std::unique_ptr<HistogramFamily> histogram;
  };
  StatusOr<Entry*> AddEntry(MetricType type, const std::string& name, const std::string& help,
                            const std::vector<std::string>& label_names,
                            const std::vector<double>& bounds);

  mutable std::mutex mu_;
  std::vector<std::unique_ptr<Entry>> entries_;  // registration order
};

// The Content-Type header for RenderPrometheus() output.
inline constexpr const char* kPrometheusContentType = "text/plain; version=0.0.4; charset=utf-8";

// Replaces every character outside [a-zA-Z0-9_:] by '_' and prefixes '_' when the name starts
// with a digit (Prometheus metric names allow ':'). Pure.
std::string SanitizeMetricName(const std::string& name);
// Label value escaping of the text format: backslash, double quote and newline. Pure.
std::string EscapeLabelValue(const std::string& value);
// HELP text escaping: backslash and newline. Pure.
std::string EscapeHelp(const std::string& help);
// Sample value formatting: shortest round-trip decimal, "+Inf", "-Inf", "NaN". Pure.
std::string FormatValue(double v);

// Bucket helpers (like prometheus_client's): `count` bounds start, start+width, ... and
// start, start*factor, ... Errors: InvalidArgument for count < 1, width <= 0, start <= 0 or
// factor <= 1.
StatusOr<std::vector<double>> LinearBuckets(double start, double width, int count);
StatusOr<std::vector<double>> ExponentialBuckets(double start, double factor, int count);

}  // namespace switchyard::metrics
