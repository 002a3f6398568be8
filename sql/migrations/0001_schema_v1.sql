-- Schema v1: the whole data model of DESIGN.md section 4.
--
-- PostgreSQL is the source of truth; Redis can be lost at any moment. The constraints here are
-- the last line of defence for the product's guarantees: credits never negative, one contact
-- per (store, phone), one recipient per (campaign, contact), one charge per recipient.

-- SMS text signatures ------------------------------------------------------------------------
-- Cost estimates for a million contacts must not render a million messages. Each name is
-- summarised once, when written, as a signature: is it GSM-7, its characters, its GSM-7
-- septets (extension characters count two) and its UCS-2 units (astral characters count
-- two). Preview and send group contacts by signature and compute segments per group.
-- Layout: gsm << 30 | chars << 20 | septets << 10 | units. NULL for an empty value.

CREATE FUNCTION sms_is_gsm7(t text) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN t ~ '^[@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !"#¤%&''()*+,./0-9:;<=>?¡A-ZÄÖÑÜ§¿a-zäöñüà\-\f\^{}\\\[~\]|€]*$';

CREATE FUNCTION sms_text_sig(t text) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
-- translate() counts extension characters (the set is form feed and ^{}\[~]|€) and the
-- astral scan runs only when the text has one: five times faster than regexp_replace on
-- imports, where this runs once per name.
RETURN CASE
    WHEN t IS NULL OR t = '' THEN NULL
    ELSE ((CASE WHEN sms_is_gsm7(t) THEN 1 ELSE 0 END)::bigint << 30)
       | (least(char_length(t), 1023)::bigint << 20)
       | (least(2 * char_length(t) - char_length(translate(t, chr(12) || '^{}\[~]|€', '')),
                1023)::bigint << 10)
       | least(char_length(t)
               + CASE WHEN t ~ '[\U00010000-\U0010FFFF]'
                      THEN char_length(regexp_replace(t, '[^\U00010000-\U0010FFFF]', '', 'g'))
                      ELSE 0 END, 1023)::bigint
END;

-- Tenants ------------------------------------------------------------------------------------

CREATE TABLE stores (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    sender_id           text NOT NULL
                        CHECK (sender_id ~ '^[A-Za-z0-9]{3,11}$' OR sender_id ~ '^[0-9]{3,14}$'),
    timezone            text NOT NULL,
    default_region      text NOT NULL DEFAULT 'GR' CHECK (default_region ~ '^[A-Z]{2}$'),
    subscription_status text NOT NULL DEFAULT 'active'
                        CHECK (subscription_status IN ('active', 'past_due', 'canceled')),
    credits_available   bigint NOT NULL DEFAULT 0 CHECK (credits_available >= 0),
    credits_reserved    bigint NOT NULL DEFAULT 0 CHECK (credits_reserved >= 0),
    -- Local send window; NULL on both ends means "any time".
    send_window_start   time,
    send_window_end     time,
    CHECK ((send_window_start IS NULL) = (send_window_end IS NULL)),
    -- Optional per-store provider share (messages/s) and frequency cap across campaigns.
    rate_cap_per_s      double precision CHECK (rate_cap_per_s > 0),
    frequency_cap_count integer CHECK (frequency_cap_count > 0),
    frequency_cap_hours integer CHECK (frequency_cap_hours > 0),
    webhook_url         text,
    webhook_secret      text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_tokens (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    store_id     bigint NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    -- SHA-256 of the token; the token itself is shown once and never stored.
    token_hash   bytea NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    -- First characters of the token, so an operator can tell tokens apart.
    token_prefix text NOT NULL,
    name         text NOT NULL DEFAULT '',
    scopes       text[] NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX api_tokens_store_idx ON api_tokens (store_id);

-- Contacts -----------------------------------------------------------------------------------

CREATE TABLE contacts (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    store_id           bigint NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    phone              text NOT NULL CHECK (phone ~ '^\+[1-9][0-9]{5,14}$'),
    first_name         text CHECK (char_length(first_name) <= 50),
    last_name          text CHECK (char_length(last_name) <= 50),
    custom             jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(custom) = 'object'),
    tags               text[] NOT NULL DEFAULT '{}',
    consent            text NOT NULL DEFAULT 'opted_in' CHECK (consent IN ('opted_in', 'opted_out')),
    consent_changed_at timestamptz NOT NULL DEFAULT now(),
    opt_out_reason     text,
    first_name_sig     bigint GENERATED ALWAYS AS (sms_text_sig(first_name)) STORED,
    last_name_sig      bigint GENERATED ALWAYS AS (sms_text_sig(last_name)) STORED,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT contacts_store_phone_key UNIQUE (store_id, phone)
);
CREATE INDEX contacts_store_id_idx ON contacts (store_id, id);
CREATE INDEX contacts_tags_idx ON contacts USING gin (tags);

-- Campaigns ----------------------------------------------------------------------------------

CREATE TABLE campaigns (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    store_id            bigint NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    name                text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    message             text NOT NULL CHECK (message <> ''),
    audience            jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(audience) = 'object'),
    status              text NOT NULL DEFAULT 'draft'
                        CHECK (status IN ('draft', 'scheduled', 'sending', 'paused',
                                          'sent', 'failed', 'cancelled')),
    priority            text NOT NULL DEFAULT 'normal' CHECK (priority IN ('high', 'normal', 'low')),
    scheduled_at        timestamptz,
    encoding            text CHECK (encoding IN ('GSM-7', 'UCS-2')),
    segments_estimate   integer CHECK (segments_estimate >= 0),
    -- Recipients counted (and paid for) when the send was accepted, then materialized by
    -- dispatch; total_recipients stays NULL until dispatch ran.
    recipients_at_send  bigint,
    total_recipients    bigint,
    -- Contacts with id <= this at send time form the audience, so a later import cannot
    -- slip recipients past the credit reservation.
    audience_max_contact_id bigint,
    -- Counters of recipients by current status, maintained by the outcome writer. Pending and
    -- sending are derived (total - terminal, and a small partial index) so that claims never
    -- touch this row.
    sent_count          bigint NOT NULL DEFAULT 0 CHECK (sent_count >= 0),
    delivered_count     bigint NOT NULL DEFAULT 0 CHECK (delivered_count >= 0),
    undelivered_count   bigint NOT NULL DEFAULT 0 CHECK (undelivered_count >= 0),
    failed_count        bigint NOT NULL DEFAULT 0 CHECK (failed_count >= 0),
    unknown_count       bigint NOT NULL DEFAULT 0 CHECK (unknown_count >= 0),
    cancelled_count     bigint NOT NULL DEFAULT 0 CHECK (cancelled_count >= 0),
    skipped_count       bigint NOT NULL DEFAULT 0 CHECK (skipped_count >= 0),
    clicks              bigint NOT NULL DEFAULT 0 CHECK (clicks >= 0),
    -- Credits: reserved at send (and extended if the audience grew); allocated to a chunk
    -- just before it is sent; charged per accepted segment; the rest released at the end.
    -- Held by the campaign now: reserved - charged - released.
    credits_reserved    bigint NOT NULL DEFAULT 0 CHECK (credits_reserved >= 0),
    credits_allocated   bigint NOT NULL DEFAULT 0 CHECK (credits_allocated >= 0),
    credits_charged     bigint NOT NULL DEFAULT 0 CHECK (credits_charged >= 0),
    credits_released    bigint NOT NULL DEFAULT 0 CHECK (credits_released >= 0),
    CHECK (credits_allocated + credits_charged + credits_released <= credits_reserved),
    dispatch_round      integer NOT NULL DEFAULT 0,
    waiting_reason      text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    started_at          timestamptz,
    finished_at         timestamptz
);
CREATE INDEX campaigns_store_idx ON campaigns (store_id, id);
CREATE INDEX campaigns_active_idx ON campaigns (status)
    WHERE status IN ('scheduled', 'sending', 'paused');

CREATE TABLE campaign_batches (
    campaign_id bigint NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    batch_no    integer NOT NULL CHECK (batch_no >= 0),
    -- Bumped whenever the batch is legitimately enqueued again (deferred retries, retry of
    -- failed recipients, rebuild after Redis loss); part of the arq job id.
    generation  integer NOT NULL DEFAULT 0,
    recipients  integer NOT NULL,
    done        boolean NOT NULL DEFAULT false,
    -- The daemon working on the batch renews its lease; an expired lease on an unfinished
    -- batch tells the sweeper the job died (SIGKILL, lost Redis) and must be enqueued again.
    lease_owner text,
    lease_until timestamptz,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (campaign_id, batch_no)
);

CREATE TABLE campaign_recipients (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    campaign_id         bigint NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    store_id            bigint NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    contact_id          bigint REFERENCES contacts (id) ON DELETE SET NULL,
    batch_no            integer NOT NULL,
    phone               text NOT NULL,
    status              text NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'sending', 'sent', 'delivered', 'undelivered',
                                          'failed', 'unknown', 'cancelled', 'skipped')),
    attempts            smallint NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at     timestamptz,
    -- Segments allocated for the current claim, then charged when accepted.
    segments            smallint CHECK (segments >= 0),
    provider_message_id text,
    error_category      text,
    error_code          text,
    error_text          text,
    clicks              integer NOT NULL DEFAULT 0 CHECK (clicks >= 0),
    claimed_at          timestamptz,
    -- Set just before the request leaves; NULL proves the provider never saw this claim.
    requested_at        timestamptz,
    sent_at             timestamptz,
    delivered_at        timestamptz,
    failed_at           timestamptz,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT campaign_recipients_campaign_contact_key UNIQUE (campaign_id, contact_id)
);
-- Claiming: the next pending recipients of one batch.
CREATE INDEX campaign_recipients_claim_idx ON campaign_recipients (campaign_id, batch_no, id)
    WHERE status = 'pending';
-- In flight: small by construction; the sweeper and progress read it.
CREATE INDEX campaign_recipients_sending_idx ON campaign_recipients (campaign_id, claimed_at)
    WHERE status = 'sending';
-- Listing and error breakdowns.
CREATE INDEX campaign_recipients_status_idx ON campaign_recipients (campaign_id, status, id);
-- Delivery reports find their recipient by provider message id.
CREATE UNIQUE INDEX campaign_recipients_provider_id_key ON campaign_recipients (provider_message_id)
    WHERE provider_message_id IS NOT NULL;

CREATE TABLE campaign_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    campaign_id bigint NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    store_id    bigint NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    from_status text,
    to_status   text NOT NULL,
    reason      text,
    actor       text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX campaign_events_campaign_idx ON campaign_events (campaign_id, id);

-- Credits ------------------------------------------------------------------------------------

CREATE TABLE credit_ledger (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    store_id        bigint NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    campaign_id     bigint REFERENCES campaigns (id) ON DELETE SET NULL,
    recipient_id    bigint,
    kind            text NOT NULL CHECK (kind IN ('topup', 'reserve', 'charge', 'release')),
    -- Signed changes to the store's two balances; charged credits leave both.
    available_delta bigint NOT NULL,
    reserved_delta  bigint NOT NULL,
    note            text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (
        (kind = 'topup'   AND available_delta > 0  AND reserved_delta = 0) OR
        (kind = 'reserve' AND available_delta < 0  AND reserved_delta = -available_delta) OR
        (kind = 'charge'  AND available_delta = 0  AND reserved_delta < 0
                          AND recipient_id IS NOT NULL) OR
        (kind = 'release' AND available_delta > 0  AND reserved_delta = -available_delta)
    )
);
CREATE INDEX credit_ledger_store_idx ON credit_ledger (store_id, id);
CREATE INDEX credit_ledger_campaign_idx ON credit_ledger (campaign_id) WHERE campaign_id IS NOT NULL;
-- A recipient is charged at most once, whatever crashes and retries happen.
CREATE UNIQUE INDEX credit_ledger_one_charge_per_recipient ON credit_ledger (recipient_id)
    WHERE kind = 'charge';

-- API plumbing -------------------------------------------------------------------------------

CREATE TABLE idempotency_keys (
    -- 'store:<id>' or 'admin'.
    scope            text NOT NULL,
    key              text NOT NULL CHECK (char_length(key) BETWEEN 1 AND 255),
    method           text NOT NULL,
    path             text NOT NULL,
    fingerprint      bytea NOT NULL,
    state            text NOT NULL DEFAULT 'in_progress' CHECK (state IN ('in_progress', 'done')),
    response_status  integer,
    response_headers jsonb,
    response_body    bytea,
    created_at       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL DEFAULT now() + interval '24 hours',
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_expires_idx ON idempotency_keys (expires_at);

CREATE TABLE webhook_outbox (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    store_id        bigint NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    campaign_id     bigint REFERENCES campaigns (id) ON DELETE SET NULL,
    event_type      text NOT NULL,
    payload         jsonb NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    dead_at         timestamptz,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_outbox_due_idx ON webhook_outbox (next_attempt_at)
    WHERE delivered_at IS NULL AND dead_at IS NULL;
-- One completion event per campaign run, however many daemons race to complete it.
CREATE UNIQUE INDEX webhook_outbox_event_once ON webhook_outbox (campaign_id, event_type, (payload ->> 'round'))
    WHERE campaign_id IS NOT NULL;
