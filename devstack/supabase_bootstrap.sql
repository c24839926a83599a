-- Supabase compatibility bootstrap: a plain PostgreSQL made to look like a Supabase project
-- created today, as far as our migrations, seed, functions and dashboards can tell.
--
-- Written from Supabase's public definitions (supabase/postgres roles and grants, supabase/auth,
-- supabase/storage and supabase/realtime schemas), reduced to what we touch:
-- * roles and memberships as on the platform: `supabase_admin` is the only superuser; `postgres`
--   (the migration owner, what the SQL editor and `supabase db push` use) is NOSUPERUSER with
--   CREATEROLE, CREATEDB, REPLICATION and BYPASSRLS, and holds anon, authenticated,
--   service_role and authenticator WITH ADMIN OPTION;
-- * `auth`, `storage` and `realtime` belong to the service admins, not to `postgres`;
-- * no default privileges: a new table in public is granted to nobody (Supabase's default for
--   every project since 2026-10-30), so migrations must grant what the API roles may use;
-- * realtime.messages partitioned by day, realtime.send failing soft with a warning;
-- * Storage with row-level security on buckets and objects.
-- Run as the superuser, once per database (idempotent). Never shipped as a migration.

-- roles (cluster-wide) --------------------------------------------------------------------------
do $$
declare
  spec text[];
begin
  foreach spec slice 1 in array array[
    ['anon', 'nologin noinherit'],
    ['authenticated', 'nologin noinherit'],
    ['service_role', 'nologin noinherit bypassrls'],
    ['authenticator', 'login noinherit'],
    ['postgres', 'login inherit nosuperuser createrole createdb replication bypassrls'],
    ['supabase_auth_admin', 'login noinherit createrole'],
    ['supabase_storage_admin', 'login noinherit createrole'],
    ['supabase_realtime_admin', 'nologin noinherit']
  ] loop
    if not exists (select 1 from pg_roles where rolname = spec[1]) then
      execute format('create role %I %s', spec[1], spec[2]);
    end if;
  end loop;
end
$$;

grant anon, authenticated, service_role to authenticator;
grant anon, authenticated, service_role, authenticator to postgres with admin option;
-- On the platform `postgres` is a member of supabase_realtime_admin, which owns
-- realtime.messages: that is how migrations add policies there.
grant supabase_realtime_admin to postgres;
-- Supabase lets `postgres` create policies on storage.objects through supautils' policy grants,
-- an extension plain PostgreSQL lacks. Membership in the table's owner is the narrowest right
-- that lets a plain server accept `create policy` from `postgres` (it is broader: the owner may
-- also alter the table). Older Supabase projects granted exactly this membership.
grant supabase_storage_admin to postgres;

-- this database ---------------------------------------------------------------------------------
do $$
begin
  execute format('alter database %I owner to postgres', current_database());
end
$$;
alter schema public owner to pg_database_owner;
grant usage on schema public to anon, authenticated, service_role;
grant all on schema public to postgres;
-- Today's default: nothing granted on new tables and sequences in public. Functions keep
-- PostgreSQL's own default (EXECUTE to PUBLIC), so a migration that forgets to revoke one
-- exposes it here exactly as it would on Supabase.
alter default privileges for role postgres in schema public
  revoke all on tables from anon, authenticated, service_role;
alter default privileges for role postgres in schema public
  revoke all on sequences from anon, authenticated, service_role;

create schema if not exists extensions authorization postgres;
grant usage on schema extensions to anon, authenticated, service_role;
-- On Supabase, `postgres` enables the offered extensions itself (`create extension unaccent
-- with schema extensions`; supautils allows it without superuser). Here the narrowest
-- equivalent is CREATE on the database, which lets it create trusted extensions only.
do $$
begin
  execute format('grant create on database %I to postgres', current_database());
end
$$;

-- auth ------------------------------------------------------------------------------------------
create schema if not exists auth authorization supabase_admin;
grant usage on schema auth to anon, authenticated, service_role, postgres;
grant all on schema auth to supabase_auth_admin;

-- The columns GoTrue reads when a user signs in (a NULL token column makes it answer 500).
create table if not exists auth.users (
  instance_id uuid,
  id uuid primary key,
  aud varchar(255),
  role varchar(255),
  email varchar(255),
  encrypted_password varchar(255),
  email_confirmed_at timestamptz,
  invited_at timestamptz,
  confirmation_token varchar(255),
  confirmation_sent_at timestamptz,
  recovery_token varchar(255),
  recovery_sent_at timestamptz,
  email_change_token_new varchar(255),
  email_change varchar(255),
  email_change_sent_at timestamptz,
  last_sign_in_at timestamptz,
  raw_app_meta_data jsonb,
  raw_user_meta_data jsonb,
  is_super_admin boolean,
  created_at timestamptz,
  updated_at timestamptz,
  phone text unique default null,
  phone_confirmed_at timestamptz,
  phone_change text default '',
  phone_change_token varchar(255) default '',
  phone_change_sent_at timestamptz,
  confirmed_at timestamptz generated always as (least(email_confirmed_at, phone_confirmed_at)) stored,
  email_change_token_current varchar(255) default '',
  email_change_confirm_status smallint default 0,
  banned_until timestamptz,
  reauthentication_token varchar(255) default '',
  reauthentication_sent_at timestamptz,
  is_sso_user boolean not null default false,
  deleted_at timestamptz,
  is_anonymous boolean not null default false
);
create unique index if not exists users_email_partial_key on auth.users (email)
  where is_sso_user = false;

create table if not exists auth.identities (
  provider_id text not null,
  user_id uuid not null references auth.users (id) on delete cascade,
  identity_data jsonb not null,
  provider text not null,
  last_sign_in_at timestamptz,
  created_at timestamptz,
  updated_at timestamptz,
  email text generated always as (lower(identity_data ->> 'email')) stored,
  id uuid primary key default gen_random_uuid(),
  unique (provider_id, provider)
);
alter table auth.users owner to supabase_auth_admin;
alter table auth.identities owner to supabase_auth_admin;
grant all on auth.users, auth.identities to postgres;

-- PostgREST puts the verified JWT claims in request.jwt.claims; these read them back.
create or replace function auth.jwt() returns jsonb
language sql stable as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim', true), ''),
    nullif(current_setting('request.jwt.claims', true), '')
  )::jsonb
$$;

create or replace function auth.uid() returns uuid
language sql stable as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.sub', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
  )::uuid
$$;

create or replace function auth.role() returns text
language sql stable as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.role', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
  )::text
$$;
alter function auth.jwt() owner to supabase_auth_admin;
alter function auth.uid() owner to supabase_auth_admin;
alter function auth.role() owner to supabase_auth_admin;
grant execute on function auth.jwt(), auth.uid(), auth.role()
  to anon, authenticated, service_role, postgres;

-- realtime --------------------------------------------------------------------------------------
create schema if not exists realtime authorization supabase_admin;
grant usage on schema realtime to anon, authenticated, service_role, postgres;
grant all on schema realtime to supabase_realtime_admin;

-- Broadcast and presence messages, partitioned by day (Realtime creates the partitions ahead
-- and drops old ones); a row for a day without a partition cannot be stored.
create table if not exists realtime.messages (
  topic text not null,
  extension text not null,
  payload jsonb,
  event text,
  private boolean default false,
  updated_at timestamp not null default now(),
  inserted_at timestamp not null default now(),
  id uuid not null default gen_random_uuid(),
  primary key (id, inserted_at)
) partition by range (inserted_at);
do $$
declare
  day date;
begin
  for day in select generate_series(current_date - 2, current_date + 3, interval '1 day')::date loop
    execute format(
      'create table if not exists realtime.%I partition of realtime.messages for values from (%L) to (%L)',
      'messages_' || to_char(day, 'YYYY_MM_DD'), day, day + 1);
  end loop;
end
$$;
alter table realtime.messages owner to supabase_realtime_admin;
alter table realtime.messages enable row level security;
grant select, insert on realtime.messages to anon, authenticated;
grant all on realtime.messages to service_role, postgres;

-- Realtime sets realtime.topic while it checks a channel join against the policies.
create or replace function realtime.topic() returns text
language sql stable as $$
  select nullif(current_setting('realtime.topic', true), '')::text
$$;

-- As on Supabase: runs with the caller's rights and never fails the caller's transaction.
create or replace function realtime.send(
  payload jsonb, event text, topic text, private boolean default true
) returns void
language plpgsql as $$
begin
  begin
    execute format('set local realtime.topic to %L', topic);
    insert into realtime.messages (payload, event, topic, private, extension)
    values (payload, event, topic, private, 'broadcast');
  exception when others then
    raise warning 'ErrorSendingBroadcastMessage: %', sqlerrm;
  end;
end
$$;

create or replace function realtime.broadcast_changes(
  topic_name text, event_name text, operation text, table_name text, table_schema text,
  new record, old record, level text default 'ROW'
) returns void
language plpgsql as $$
declare
  row_data jsonb := jsonb_build_object(
    'old_record', case when old is null then null else to_jsonb(old) end,
    'record', case when new is null then null else to_jsonb(new) end,
    'operation', operation,
    'table', table_name,
    'schema', table_schema
  );
begin
  if level = 'ROW' then
    perform realtime.send(row_data, event_name, topic_name, true);
  else
    raise exception 'level % not supported', level;
  end if;
end
$$;
alter function realtime.topic() owner to supabase_admin;
alter function realtime.send(jsonb, text, text, boolean) owner to supabase_admin;
alter function realtime.broadcast_changes(text, text, text, text, text, record, record, text)
  owner to supabase_admin;
grant execute on function realtime.topic(), realtime.send(jsonb, text, text, boolean),
  realtime.broadcast_changes(text, text, text, text, text, record, record, text)
  to anon, authenticated, service_role, postgres;

-- storage ---------------------------------------------------------------------------------------
create schema if not exists storage authorization supabase_admin;
grant usage on schema storage to anon, authenticated, service_role, postgres;
grant all on schema storage to supabase_storage_admin;

create table if not exists storage.buckets (
  id text primary key,
  name text not null,
  owner uuid,
  public boolean default false,
  file_size_limit bigint,
  allowed_mime_types text[],
  created_at timestamptz default now(),
  updated_at timestamptz default now()
);
create unique index if not exists bname on storage.buckets (name);

create table if not exists storage.objects (
  id uuid primary key default gen_random_uuid(),
  bucket_id text references storage.buckets (id),
  name text,
  owner uuid,
  metadata jsonb,
  created_at timestamptz default now(),
  updated_at timestamptz default now(),
  last_accessed_at timestamptz default now()
);
create unique index if not exists bucketid_objname on storage.objects (bucket_id, name);
alter table storage.buckets owner to supabase_storage_admin;
alter table storage.objects owner to supabase_storage_admin;
alter table storage.buckets enable row level security;
alter table storage.objects enable row level security;
grant all on storage.buckets, storage.objects to anon, authenticated, service_role, postgres;

create or replace function storage.foldername(name text) returns text[]
language sql immutable as $$
  select (string_to_array(name, '/'))[1:array_length(string_to_array(name, '/'), 1) - 1]
$$;
alter function storage.foldername(text) owner to supabase_storage_admin;
grant execute on function storage.foldername(text) to anon, authenticated, service_role, postgres;

-- publication -----------------------------------------------------------------------------------
do $$
begin
  if not exists (select 1 from pg_publication where pubname = 'supabase_realtime') then
    create publication supabase_realtime;
  end if;
end
$$;
alter publication supabase_realtime owner to postgres;
