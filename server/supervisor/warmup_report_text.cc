#include "server/supervisor/warmup_report_text.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/shape.h"

namespace kiln {

std::string DescribeWarmupReport(const internal::WarmupReport& report) {
  std::string shapes;
  for (const internal::ShapeWarmup& shape : report.shapes()) {
    const std::string name = Shape{shape.batch_size(), shape.sequence_length()}.Describe();
    if (shape.refused() && shape.calls() == 0) {
      absl::StrAppendFormat(&shapes, " [%s REFUSED: projected peak %.0f MB over budget]", name,
                            shape.projected_peak_bytes() / 1e6);
      continue;
    }
    const std::string settled = shape.settled_after() > 0
                                    ? absl::StrCat("settled after ", shape.settled_after())
                                    : absl::StrCat("not settled in ", shape.calls(), " calls");
    // A template's costly shape that its worker did not confirm (ConfirmWarmup): its first call
    // was the template's.
    const bool unconfirmed = shape.from_template() && shape.calls() == 0;
    absl::StrAppendFormat(
        &shapes, " [%s first %.1f ms%s, steady %.1f ms (CPU %.1f ms), %s, peak %.0f MB%s%s]", name,
        shape.first_ms(), unconfirmed ? " in the template" : "", shape.steady_ms(),
        shape.steady_cpu_ms(),
        unconfirmed             ? absl::StrCat("not confirmed (template ", settled, ")")
        : shape.from_template() ? absl::StrCat("confirmed (template ", settled, ")")
                                : settled,
        shape.peak_anon_bytes() / 1e6, shape.recorded_request() ? ", on a recorded request" : "",
        shape.refused() ? ", REFUSED: over budget" : "");
  }
  std::string tokenizer;
  if (report.tokenizer_texts() > 0) {
    tokenizer = absl::StrFormat(" tokenizer: %d texts, first %.2f ms, steady %.2f ms;",
                                report.tokenizer_texts(), report.tokenizer_first_ms(),
                                report.tokenizer_steady_ms());
  }
  const std::string budget =
      report.budget_bytes() > 0 ? absl::StrFormat(" of budget %.0f MB", report.budget_bytes() / 1e6)
                                : "";
  std::string priority;  // while warming; it returns to normal priority once serving
  if (report.idle_starved()) {
    priority = absl::StrFormat(
        " at idle priority for %.0f ms, then normal (starved: it got %.1f%% of the CPU time it "
        "waited for)",
        report.idle_ms(), 100 * report.idle_starved_cpu_share());
  } else if (report.idle_priority()) {
    priority = " at idle priority";
  } else if (!report.priority_note().empty()) {
    priority = absl::StrCat(" at normal priority (", report.priority_note(), ")");
  }
  const std::string from_template =
      report.template_pid() > 0
          ? absl::StrFormat(" from the warm template (pid %d, warmed in %.0f ms, %.0f MB private)",
                            report.template_pid(), report.template_warmup_ms(),
                            report.template_private_bytes() / 1e6)
          : "";
  return absl::StrFormat(
      "warm in %.0f ms%s on %s, %d thread(s)%s%s, peak anon %.0f MB%s, private peak %.0f MB;%s%s",
      report.warmup_ms(), from_template, report.device(), report.intra_op_threads(),
      report.threads_note().empty() ? "" : absl::StrCat(" (", report.threads_note(), ")"), priority,
      report.peak_anon_bytes() / 1e6, budget, report.private_peak_bytes() / 1e6, tokenizer,
      shapes.empty() ? " no warmup" : shapes);
}

}  // namespace kiln
