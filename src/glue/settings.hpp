// Process-wide values of the billing.* settings (defined in module.cpp).
#pragma once

namespace billing::glue {
extern bool enforce_quotas;
}
