CREATE TYPE billing.plan_tier AS ENUM ('free', 'pro', 'enterprise', 'custom');
CREATE TYPE billing.subscription_status AS ENUM
	('trialing', 'active', 'past_due', 'canceled', 'expired', 'incomplete', 'paused');
CREATE TYPE billing.billing_interval AS ENUM ('monthly', 'yearly', 'lifetime');

-- Touches updated_at on every update of a billing table.
CREATE FUNCTION billing._touch_updated_at() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	NEW.updated_at := pg_catalog.now();
	RETURN NEW;
END
$$;
