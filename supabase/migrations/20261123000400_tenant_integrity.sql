-- Tenant integrity: an advisor's login belongs to the advisor's tenant.
--
-- RLS keeps a tenant admin inside their tenant's rows, but the values they write could still
-- point outside it: an advisor row whose user_id is another tenant's user would show that
-- user this tenant's conversations. Twilio numbers are already unique across tenants
-- (advisors.twilio_phone_number is unique), so no admin can take a number another tenant uses.

create or replace function private.check_advisor_login() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  if new.user_id is not null and not exists (
    select 1 from public.tenant_members m
    where m.tenant_id = new.tenant_id and m.user_id = new.user_id
  ) then
    raise exception 'advisor login % is not a member of tenant %', new.user_id, new.tenant_id
      using errcode = '23514';  -- check_violation
  end if;
  return new;
end
$$;
revoke all on function private.check_advisor_login() from public, anon, authenticated;

create trigger advisors_login_in_tenant
  before insert or update of user_id, tenant_id on public.advisors
  for each row execute function private.check_advisor_login();

-- A member who leaves a tenant stops being the login of its advisors.
create or replace function private.release_advisor_login() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  update public.advisors set user_id = null
  where tenant_id = old.tenant_id and user_id = old.user_id;
  return old;
end
$$;
revoke all on function private.release_advisor_login() from public, anon, authenticated;

create trigger tenant_members_release_login
  after delete on public.tenant_members
  for each row execute function private.release_advisor_login();
