-- billing.configure(key, value): the only way to change settings.
CREATE FUNCTION billing.configure(key text, value text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	style text := pg_catalog.current_setting('IntervalStyle');
	standard interval;
BEGIN
	PERFORM billing._required(key, 'key'), billing._required(value, 'value');
	CASE key
	WHEN 'past_due_grace', 'stripe_tolerance', 'stripe_event_retention', 'usage_record_retention' THEN
		BEGIN
			-- one value in every session: each reader parses the text under its
			-- own IntervalStyle, and sql_standard gives a leading sign to the
			-- unsigned fields after it ('-1 26:00:00' is +2 hours in the other
			-- styles, -50 hours in it). (An error here rolls the settings back.)
			PERFORM pg_catalog.set_config('IntervalStyle', 'sql_standard', true);
			standard := value::interval;
			PERFORM pg_catalog.set_config('IntervalStyle', 'postgres', true);
			IF value::interval OPERATOR(pg_catalog.<>) standard THEN
				RAISE EXCEPTION 'setting "%" reads differently under different IntervalStyle settings: "%"', key, value
					USING ERRCODE = '22023', HINT = 'Give each field its own sign, e.g. ''-1 days +26:00:00'', or units, e.g. ''2 hours''.';
			END IF;
			PERFORM pg_catalog.set_config('IntervalStyle', style, true);
			IF value::interval OPERATOR(pg_catalog.<) interval '0' THEN
				RAISE EXCEPTION 'setting "%" must not be negative', key USING ERRCODE = '22023';
			END IF;
			-- every time billing adds it to stays far inside timestamptz's range
			IF value::interval OPERATOR(pg_catalog.>) interval '100 years' THEN
				RAISE EXCEPTION 'setting "%" must be at most 100 years', key USING ERRCODE = '22023';
			END IF;
		EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR interval_field_overflow THEN
			RAISE EXCEPTION 'invalid value for setting "%": "%"', key, value
				USING ERRCODE = '22023', HINT = 'Give an interval such as ''14 days''.';
		END;
	WHEN 'stripe_webhook_secret' THEN
		IF pg_catalog.btrim(value) OPERATOR(pg_catalog.=) '' THEN
			RAISE EXCEPTION 'setting "stripe_webhook_secret" must not be empty' USING ERRCODE = '22023';
		END IF;
		-- secrets are separated by commas (for rotation); none may be empty
		IF EXISTS (SELECT 1 FROM pg_catalog.unnest(pg_catalog.string_to_array(value, ',')) AS secret
					WHERE pg_catalog.btrim(secret) OPERATOR(pg_catalog.=) '') THEN
			RAISE EXCEPTION 'setting "stripe_webhook_secret" must not hold an empty secret'
				USING ERRCODE = '22023', HINT = 'Separate two or more secrets with single commas.';
		END IF;
	ELSE
		RAISE EXCEPTION 'unknown setting "%"', key
			USING ERRCODE = '22023',
				  HINT = 'Known settings are past_due_grace, stripe_event_retention, stripe_tolerance, stripe_webhook_secret and usage_record_retention.';
	END CASE;
	INSERT INTO billing.settings AS s (key, value) VALUES (key, value)
	ON CONFLICT ON CONSTRAINT settings_pkey DO UPDATE SET value = EXCLUDED.value, deleted_at = NULL;
END
$$;
COMMENT ON FUNCTION billing.configure(text, text) IS 'Changes a billing setting (billing_admin only)';

-- Internal: a setting's value, or the given default (C++, src/glue/module.cpp:
-- a kept plan, not an SQL function planned again on every call).
CREATE FUNCTION billing._setting(key text, fallback text DEFAULT NULL) RETURNS text
LANGUAGE c STABLE SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'billing_setting';
