-- Tenancy: businesses (tenants), their members, and their advisors (one Twilio number each).
-- Also the private helpers every row-level security policy uses to decide visibility.

create schema if not exists private;
grant usage on schema private to authenticated, service_role;

create table public.tenants (
  id uuid primary key default gen_random_uuid(),
  name text not null,
  -- Days messages are kept; null means the deployment's default.
  retention_days integer check (retention_days is null or retention_days > 0),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
comment on table public.tenants is 'A business using the assistant; every other row belongs to one.';
alter table public.tenants enable row level security;

create table public.tenant_members (
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  user_id uuid not null references auth.users (id) on delete cascade,
  role text not null check (role in ('admin', 'supervisor', 'advisor')),
  created_at timestamptz not null default now(),
  primary key (tenant_id, user_id)
);
comment on table public.tenant_members is 'Dashboard users of a tenant and their role.';
create index tenant_members_user_idx on public.tenant_members (user_id);
alter table public.tenant_members enable row level security;

create table public.advisors (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  user_id uuid references auth.users (id) on delete set null,
  name text not null,
  phone_number text,
  twilio_phone_number text not null unique check (twilio_phone_number ~ '^\+[1-9][0-9]{6,14}$'),
  is_active boolean not null default true,
  settings jsonb not null default '{}'::jsonb,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
comment on table public.advisors is
  'A human advisor and the Twilio WhatsApp number (E.164, no whatsapp: prefix) customers write to. '
  'settings: prompt, language, greeting, audio_available, notify_on_handoff.';
create index advisors_tenant_idx on public.advisors (tenant_id);
create index advisors_user_idx on public.advisors (user_id);
alter table public.advisors enable row level security;

create or replace function private.touch_updated_at() returns trigger
language plpgsql as $$
begin
  new.updated_at := now();
  return new;
end
$$;

create trigger tenants_touch before update on public.tenants
  for each row execute function private.touch_updated_at();
create trigger advisors_touch before update on public.advisors
  for each row execute function private.touch_updated_at();

-- Visibility helpers. security definer so policies do not recurse through each other's RLS;
-- stable and wrapped in (select ...) by the policies so they run once per statement.
create or replace function private.staff_tenant_ids() returns setof uuid
language sql stable security definer set search_path = '' as $$
  select tenant_id from public.tenant_members
  where user_id = (select auth.uid()) and role in ('admin', 'supervisor')
$$;

create or replace function private.member_tenant_ids() returns setof uuid
language sql stable security definer set search_path = '' as $$
  select tenant_id from public.tenant_members where user_id = (select auth.uid())
$$;

create or replace function private.admin_tenant_ids() returns setof uuid
language sql stable security definer set search_path = '' as $$
  select tenant_id from public.tenant_members
  where user_id = (select auth.uid()) and role = 'admin'
$$;

-- Advisors whose conversations the caller may see: their own, or all of a tenant they staff.
create or replace function private.visible_advisor_ids() returns setof uuid
language sql stable security definer set search_path = '' as $$
  select id from public.advisors where user_id = (select auth.uid())
  union
  select a.id from public.advisors a
  where a.tenant_id in (select private.staff_tenant_ids())
$$;

revoke all on all functions in schema private from public;
grant execute on function private.staff_tenant_ids(), private.member_tenant_ids(),
  private.admin_tenant_ids(), private.visible_advisor_ids() to authenticated;

-- tenants: members read their tenant; admins rename it.
revoke insert, delete on public.tenants from anon, authenticated;
create policy "members read their tenant" on public.tenants
  for select to authenticated using (id in (select private.member_tenant_ids()));
create policy "admins update their tenant" on public.tenants
  for update to authenticated
  using (id in (select private.admin_tenant_ids()))
  with check (id in (select private.admin_tenant_ids()));

-- tenant_members: everyone reads their own membership; staff read their tenant's; admins manage.
create policy "members read memberships" on public.tenant_members
  for select to authenticated
  using (user_id = (select auth.uid()) or tenant_id in (select private.staff_tenant_ids()));
create policy "admins add members" on public.tenant_members
  for insert to authenticated with check (tenant_id in (select private.admin_tenant_ids()));
create policy "admins change members" on public.tenant_members
  for update to authenticated
  using (tenant_id in (select private.admin_tenant_ids()))
  with check (tenant_id in (select private.admin_tenant_ids()));
create policy "admins remove members" on public.tenant_members
  for delete to authenticated using (tenant_id in (select private.admin_tenant_ids()));

-- advisors: an advisor reads their own row; staff read the tenant's; admins manage them.
create policy "visible advisors are readable" on public.advisors
  for select to authenticated using (id in (select private.visible_advisor_ids()));
create policy "admins add advisors" on public.advisors
  for insert to authenticated with check (tenant_id in (select private.admin_tenant_ids()));
create policy "admins change advisors" on public.advisors
  for update to authenticated
  using (tenant_id in (select private.admin_tenant_ids()))
  with check (tenant_id in (select private.admin_tenant_ids()));
create policy "admins remove advisors" on public.advisors
  for delete to authenticated using (tenant_id in (select private.admin_tenant_ids()));

revoke all on public.tenants, public.tenant_members, public.advisors from anon;
