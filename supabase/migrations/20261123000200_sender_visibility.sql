-- The send function's authorization without borrowing the dashboards' role.
--
-- Until now the functions' role was a member of `authenticated` so that it could evaluate RLS
-- as the caller; that membership also brought authenticated's table privileges to a login role
-- that must only execute our functions. Instead, "which advisors may this user see" is one
-- function, used both by every RLS policy (through private.visible_advisor_ids()) and by the
-- send path (public.conversation_for_sender): one rule, two callers, no role switching.

create or replace function private.visible_advisor_ids_for(p_user_id uuid) returns setof uuid
language sql stable security definer set search_path = '' as $$
  select a.id from public.advisors a where a.user_id = p_user_id
  union
  select a.id from public.advisors a
  join public.tenant_members m on m.tenant_id = a.tenant_id
  where m.user_id = p_user_id and m.role in ('admin', 'supervisor')
$$;
comment on function private.visible_advisor_ids_for(uuid) is
  'Advisors whose conversations a user may see: their own, or all of a tenant they staff.';

-- What the policies call: the same rule for the user of the request.
create or replace function private.visible_advisor_ids() returns setof uuid
language sql stable security definer set search_path = '' as $$
  select private.visible_advisor_ids_for((select auth.uid()))
$$;

-- The conversation an advisor wants to write to, if that user may see it (else null).
create or replace function public.conversation_for_sender(p_user_id uuid, p_conversation_id uuid)
returns jsonb
language sql stable security definer set search_path = '' as $$
  select jsonb_build_object(
    'advisor_id', c.advisor_id, 'customer_phone', c.customer_phone,
    'opted_out_at', c.opted_out_at, 'last_inbound_at', c.last_inbound_at,
    'twilio_phone_number', a.twilio_phone_number)
  from public.conversations c
  join public.advisors a on a.id = c.advisor_id
  where c.id = p_conversation_id
    and c.advisor_id in (select private.visible_advisor_ids_for(p_user_id))
$$;

revoke all on function private.visible_advisor_ids_for(uuid) from public, anon, authenticated;
revoke all on function public.conversation_for_sender(uuid, uuid) from public, anon, authenticated;
grant execute on function public.conversation_for_sender(uuid, uuid)
  to assistant_functions, service_role;

revoke authenticated from assistant_functions;
