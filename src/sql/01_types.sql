CREATE TYPE billing.plan_tier AS ENUM ('free', 'pro', 'enterprise', 'custom');
CREATE TYPE billing.subscription_status AS ENUM
	('trialing', 'active', 'past_due', 'canceled', 'expired', 'incomplete', 'paused');
CREATE TYPE billing.billing_interval AS ENUM ('monthly', 'yearly', 'lifetime');

-- Touches updated_at on every update of a billing table.
CREATE FUNCTION billing._touch_updated_at() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'billing_touch_updated_at';

-- Argument checks every area uses, for the README's error table: a required
-- argument that is NULL is 22004, a time outside the years 0001 to 9999 (UTC)
-- is 22008. Each returns its value.
CREATE FUNCTION billing._required(value anyelement, name text) RETURNS anyelement
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF value IS NULL OR name IS NULL THEN
		RAISE EXCEPTION 'argument "%" must not be null', COALESCE(name, 'name') USING ERRCODE = '22004';
	END IF;
	RETURN value;
END
$$;
CREATE FUNCTION billing._valid_time(value timestamptz, name text) RETURNS timestamptz
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF value IS NULL OR name IS NULL THEN
		RAISE EXCEPTION 'argument "%" must not be null', COALESCE(name, 'name') USING ERRCODE = '22004';
	END IF;
	-- (timestamptz literals with an explicit offset: the same in every time zone)
	IF NOT (value OPERATOR(pg_catalog.>=) '0001-01-01 00:00:00+00' AND value OPERATOR(pg_catalog.<) '10000-01-01 00:00:00+00') THEN
		RAISE EXCEPTION 'argument "%" is out of range', name USING ERRCODE = '22008',
			DETAIL = pg_catalog.format('The timestamp %s is outside the years 0001 to 9999 (UTC) that billing supports.', value);
	END IF;
	RETURN value;
END
$$;
-- A report period: both ends valid times (22004 / 22008) and the end after
-- the start (22023).
CREATE FUNCTION billing._valid_period(from_time timestamptz, to_time timestamptz) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM billing._valid_time(from_time, 'from_time'), billing._valid_time(to_time, 'to_time');
	IF to_time OPERATOR(pg_catalog.<=) from_time THEN
		RAISE EXCEPTION 'report period must have a start before its end' USING ERRCODE = '22023';
	END IF;
END
$$;
