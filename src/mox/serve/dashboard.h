#pragma once
// The server's dashboard page (GET /dashboard): one self-contained HTML document (inline CSS
// and JavaScript, no external assets) that polls GET /dashboard/data (same origin, passing
// on ?token=) and draws SVG charts of requests, tokens and latency percentiles over time per
// model and per customer, each key's quota use, and this month's totals and revenue.
#include <string>

namespace mox::serve {

const std::string& dashboard_html();

}  // namespace mox::serve
