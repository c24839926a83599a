-- Advisor settings are checked when saved: the texts an admin writes (prompt, greeting and
-- every *_message notice) must be strings, and the whole object stays small. The webhook
-- substitutes notices safely, so a stray `{` or `$` in them is fine.

alter table public.advisors add constraint advisors_settings_valid check (
  jsonb_typeof(settings) = 'object'
  and length(settings::text) <= 20000
  and not jsonb_path_exists(settings,
    '$.keyvalue() ? (@.key like_regex "(_message|^prompt|^greeting)$" && @.value.type() != "string")')
);
