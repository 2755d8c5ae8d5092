CREATE TYPE billing.plan_tier AS ENUM ('free', 'pro', 'enterprise', 'custom');
CREATE TYPE billing.subscription_status AS ENUM
	('trialing', 'active', 'past_due', 'canceled', 'expired', 'incomplete', 'paused');
CREATE TYPE billing.billing_interval AS ENUM ('monthly', 'yearly', 'lifetime');

-- Touches updated_at on every update of a billing table.
CREATE FUNCTION billing._touch_updated_at() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'billing_touch_updated_at';
