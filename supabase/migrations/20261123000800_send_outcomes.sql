-- Twilio's answer to a send is written in one place, and a status callback is never orphaned.
--
-- private.complete_send records the outcome of a send on our row (the sid and status, or the
-- failure) and then applies any status callback that arrived before it. Every path calls it:
-- the first send (update_outbound), a resend (finish_resend) and a callback whose URL names
-- our row (record_status).
--
-- complete_send and apply_status take the same transaction-level advisory lock on the sid.
-- Without it, a callback's UPDATE (no row has the sid yet) and its insert into
-- early_status_callbacks could both fall between complete_send's write and its look at the
-- early callbacks, and the callback would be lost. With it, one waits for the other's commit.

create or replace function private.lock_sid(p_provider_sid text) returns void
language sql set search_path = '' as $$
  select pg_catalog.pg_advisory_xact_lock(
    pg_catalog.hashtextextended('twilio-message:' || p_provider_sid, 0))
$$;

create or replace function private.complete_send(
  p_message_id uuid, p_provider_sid text, p_status text, p_error_code integer,
  p_error_message text, p_count_attempt boolean
) returns void
language plpgsql set search_path = '' as $$
begin
  if p_provider_sid is null then
    -- Refused, or unknown whether Twilio has it. A row that already has a sid was sent (a
    -- callback said so): a late failure of the same send does not undo that.
    update public.messages m set status = 'failed', error_code = p_error_code,
      error_message = p_error_message,
      attempts = m.attempts + case when p_count_attempt then 1 else 0 end
    where m.id = p_message_id and m.direction = 'outbound' and m.provider_sid is null
      and m.status in ('queued', 'sending', 'failed');
    return;
  end if;

  perform private.lock_sid(p_provider_sid);
  update public.messages m set
    provider_sid = p_provider_sid,
    -- Our own states (queued, sending, failed) give way to Twilio's; Twilio's only move forward.
    status = case when m.provider_sid is null or private.status_rank(p_status) > private.status_rank(m.status)
                  then p_status else m.status end,
    error_code = case when m.provider_sid is null then p_error_code else m.error_code end,
    error_message = case when m.provider_sid is null then p_error_message else m.error_message end,
    attempts = m.attempts + case when p_count_attempt then 1 else 0 end
  where m.id = p_message_id and m.direction = 'outbound'
    and (m.provider_sid = p_provider_sid or (m.provider_sid is null
      and not exists (select 1 from public.messages o where o.provider_sid = p_provider_sid)));

  -- A callback that beat us here.
  with early as (
    delete from public.early_status_callbacks e where e.provider_sid = p_provider_sid returning e.*
  )
  update public.messages m set status = early.status,
    error_code = coalesce(early.error_code, m.error_code),
    error_message = coalesce(early.error_message, m.error_message)
  from early
  where m.provider_sid = p_provider_sid
    and private.status_rank(early.status) > private.status_rank(m.status);
end
$$;

revoke all on function private.lock_sid(text),
  private.complete_send(uuid, text, text, integer, text, boolean)
  from public, anon, authenticated;

create or replace function public.update_outbound(
  p_message_id uuid, p_provider_sid text, p_status text,
  p_error_code integer default null, p_error_message text default null
) returns void
language sql security definer set search_path = '' as $$
  select private.complete_send(p_message_id, p_provider_sid, p_status, p_error_code,
    p_error_message, true)
$$;

-- Result of a resend (its attempt was counted when it was claimed).
create or replace function public.finish_resend(
  p_message_id uuid, p_provider_sid text, p_status text, p_error_code integer,
  p_error_message text
) returns void
language sql security definer set search_path = '' as $$
  select private.complete_send(p_message_id, p_provider_sid, p_status, p_error_code,
    p_error_message, false)
$$;

-- A delivery-status callback. Returns 'applied', 'unchanged' (repeat or late) or 'early'
-- (no message with that sid yet: kept, and applied by complete_send).
create or replace function public.apply_status(
  p_provider_sid text, p_status text, p_error_code integer default null,
  p_error_message text default null
) returns text
language plpgsql security definer set search_path = '' as $$
declare
  v_changed integer;
begin
  if private.status_rank(p_status) < 1 then
    raise exception 'unknown status %', p_status using errcode = '22023';
  end if;
  perform private.lock_sid(p_provider_sid);
  update public.messages m set
    status = p_status,
    error_code = coalesce(p_error_code, m.error_code),
    error_message = coalesce(p_error_message, m.error_message)
  where m.provider_sid = p_provider_sid and m.direction = 'outbound'
    and private.status_rank(p_status) > private.status_rank(m.status);
  get diagnostics v_changed = row_count;
  if v_changed > 0 then
    return 'applied';
  end if;
  if exists (select 1 from public.messages where provider_sid = p_provider_sid) then
    return 'unchanged';
  end if;
  insert into public.early_status_callbacks as e (provider_sid, status, error_code, error_message)
  values (p_provider_sid, p_status, p_error_code, p_error_message)
  on conflict (provider_sid) do update set
    status = excluded.status,
    error_code = coalesce(excluded.error_code, e.error_code),
    error_message = coalesce(excluded.error_message, e.error_message)
  where private.status_rank(excluded.status) > private.status_rank(e.status);
  return 'early';
end
$$;

-- A status callback, in one round trip. When its URL names our row (?message_id=), a send
-- whose answer never reached us (a crash, a read timeout) gets its sid first.
create or replace function public.record_status(
  p_provider_sid text, p_status text, p_error_code integer default null,
  p_error_message text default null, p_message_id uuid default null
) returns text
language plpgsql security definer set search_path = '' as $$
begin
  if p_message_id is not null then
    perform private.complete_send(p_message_id, p_provider_sid, 'sent', null, null, false);
  end if;
  return public.apply_status(p_provider_sid, p_status, p_error_code, p_error_message);
end
$$;
