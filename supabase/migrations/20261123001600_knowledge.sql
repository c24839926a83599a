-- Knowledge base: the business's own documents, cut into passages the AI answers from.
--
-- Passages are found with Postgres full-text search in the same round trip that stores the
-- customer's message (ingest_inbound, pending_turn and the sweep's claim return them beside
-- the history): the language's stemming configuration, accents folded with unaccent, any of
-- the message's words (a typo stands for the indexed words sharing its first five letters),
-- each weighted by its rarity among the tenant's passages; a passage must cover enough of the
-- message's information to be given. Tenant admins and supervisors manage sources through the send function; advisors
-- read what applies to them (their own and the tenant-wide ones); anon nothing.

create extension if not exists unaccent with schema extensions;

-- Lower case without accents: "Envíos a MEDELLÍN" and "envios a medellin" index alike.
-- (unaccent with its dictionary named is immutable in practice, as a generated column needs.)
create or replace function private.fold(p_text text) returns text
language sql immutable parallel safe set search_path = '' as $$
  select lower(extensions.unaccent('extensions.unaccent'::regdictionary, coalesce(p_text, '')))
$$;

-- The text search configuration for a language code (es, en, pt; anything else: simple).
create or replace function private.text_config(p_language text) returns regconfig
language sql immutable parallel safe set search_path = '' as $$
  select case left(lower(coalesce(p_language, '')), 2)
    when 'es' then 'pg_catalog.spanish'::regconfig
    when 'en' then 'pg_catalog.english'::regconfig
    when 'pt' then 'pg_catalog.portuguese'::regconfig
    else 'pg_catalog.simple'::regconfig
  end
$$;

create table public.knowledge_sources (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  -- null: the whole tenant; else only this advisor's conversations.
  advisor_id uuid references public.advisors (id) on delete cascade,
  title text not null check (length(title) between 1 and 200),
  kind text not null check (kind in ('markdown', 'text', 'qa_csv')),
  language text not null default 'es' check (language in ('es', 'en', 'pt')),
  created_by uuid references auth.users (id) on delete set null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
comment on table public.knowledge_sources is
  'A document of the business (Markdown, text, or question/answer CSV) the AI answers from.';
create unique index knowledge_sources_title_idx
  on public.knowledge_sources (tenant_id, advisor_id, title) nulls not distinct;
create index knowledge_sources_advisor_idx on public.knowledge_sources (advisor_id);
create index knowledge_sources_creator_idx on public.knowledge_sources (created_by);

create table public.knowledge_chunks (
  id uuid primary key default gen_random_uuid(),
  source_id uuid not null references public.knowledge_sources (id) on delete cascade,
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  advisor_id uuid references public.advisors (id) on delete cascade,
  position integer not null,
  heading text,
  content text not null check (length(content) between 1 and 4000),
  config regconfig not null,
  search tsvector generated always as (
    to_tsvector(config, private.fold(coalesce(heading, '') || ' ' || content))) stored
);
comment on table public.knowledge_chunks is
  'A passage of a knowledge source, indexed for full-text search in the source''s language.';
create index knowledge_chunks_search_idx on public.knowledge_chunks using gin (search);
create index knowledge_chunks_scope_idx on public.knowledge_chunks (tenant_id, advisor_id);
create index knowledge_chunks_source_idx on public.knowledge_chunks (source_id, position);
create index knowledge_chunks_advisor_idx on public.knowledge_chunks (advisor_id);

alter table public.knowledge_sources enable row level security;
alter table public.knowledge_chunks enable row level security;
revoke all on public.knowledge_sources, public.knowledge_chunks from anon, authenticated, service_role;
-- Dashboards read; every write goes through the send function (chunking happens there).
grant select on public.knowledge_sources, public.knowledge_chunks to authenticated;

-- Who may read a tenant's or an advisor's knowledge: staff of the tenant, whoever sees the
-- advisor, and every member for tenant-wide sources. One rule for both tables.
create or replace function private.may_read_knowledge(p_tenant_id uuid, p_advisor_id uuid)
returns boolean
language sql stable security definer set search_path = '' as $$
  select p_tenant_id in (select private.staff_tenant_ids())
    or p_advisor_id in (select private.visible_advisor_ids())
    or (p_advisor_id is null and p_tenant_id in (select private.member_tenant_ids()))
$$;
revoke all on function private.may_read_knowledge(uuid, uuid) from public, anon;
grant execute on function private.may_read_knowledge(uuid, uuid) to authenticated;

create policy "knowledge the user may read" on public.knowledge_sources
  for select to authenticated using ((select private.may_read_knowledge(tenant_id, advisor_id)));
create policy "knowledge the user may read" on public.knowledge_chunks
  for select to authenticated using ((select private.may_read_knowledge(tenant_id, advisor_id)));

-- The tenant a knowledge request acts on, if the user may manage its knowledge (tenant admin
-- or supervisor): the advisor's tenant, else the tenant named, else the only tenant they staff.
create or replace function private.knowledge_tenant(
  p_user_id uuid, p_tenant_id uuid, p_advisor_id uuid
) returns uuid
language plpgsql stable set search_path = '' as $$
declare
  v_tenant uuid := p_tenant_id;
begin
  if p_advisor_id is not null then
    select a.tenant_id into v_tenant from public.advisors a where a.id = p_advisor_id;
    if v_tenant is null or (p_tenant_id is not null and p_tenant_id <> v_tenant) then
      raise exception 'unknown advisor %', p_advisor_id using errcode = 'P0002';
    end if;
  end if;
  if v_tenant is null then
    select min(m.tenant_id::text)::uuid into v_tenant from public.tenant_members m
    where m.user_id = p_user_id and m.role in ('admin', 'supervisor')
    having count(*) = 1;
  end if;
  if v_tenant is null or not exists (
    select 1 from public.tenant_members m where m.user_id = p_user_id and m.tenant_id = v_tenant
      and m.role in ('admin', 'supervisor')
  ) then
    raise exception 'only tenant admins and supervisors manage knowledge' using errcode = '42501';
  end if;
  return v_tenant;
end
$$;

-- Upload: replaces the source with the same title and scope, atomically (one transaction).
create or replace function public.replace_knowledge_source(
  p_user_id uuid, p_tenant_id uuid, p_advisor_id uuid, p_title text, p_kind text,
  p_language text, p_chunks jsonb  -- [{heading, content}] in order
) returns jsonb
language plpgsql security definer set search_path = '' as $$
declare
  v_tenant uuid := private.knowledge_tenant(p_user_id, p_tenant_id, p_advisor_id);
  v_source uuid;
begin
  delete from public.knowledge_sources
  where tenant_id = v_tenant and advisor_id is not distinct from p_advisor_id and title = p_title;
  insert into public.knowledge_sources (tenant_id, advisor_id, title, kind, language, created_by)
  values (v_tenant, p_advisor_id, p_title, p_kind, p_language, p_user_id)
  returning id into v_source;
  insert into public.knowledge_chunks (source_id, tenant_id, advisor_id, position, heading,
    content, config)
  select v_source, v_tenant, p_advisor_id, c.n, c.value ->> 'heading', c.value ->> 'content',
    private.text_config(p_language)
  from jsonb_array_elements(p_chunks) with ordinality as c(value, n);
  perform private.refresh_knowledge_terms(v_tenant);
  return jsonb_build_object('source_id', v_source, 'tenant_id', v_tenant,
    'chunks', jsonb_array_length(p_chunks));
end
$$;

create or replace function public.delete_knowledge_source(p_user_id uuid, p_source_id uuid)
returns boolean
language plpgsql security definer set search_path = '' as $$
declare
  v_source public.knowledge_sources;
begin
  select * into v_source from public.knowledge_sources where id = p_source_id;
  if not found then
    return false;
  end if;
  perform private.knowledge_tenant(p_user_id, v_source.tenant_id, v_source.advisor_id);
  delete from public.knowledge_sources where id = p_source_id;
  perform private.refresh_knowledge_terms(v_source.tenant_id);
  return true;
end
$$;

-- The sources of every tenant the user manages, with their passage counts.
create or replace function public.list_knowledge_sources(p_user_id uuid) returns jsonb
language sql stable security definer set search_path = '' as $$
  select coalesce(jsonb_agg(jsonb_build_object(
    'id', s.id, 'tenant_id', s.tenant_id, 'advisor_id', s.advisor_id, 'title', s.title,
    'kind', s.kind, 'language', s.language, 'updated_at', s.updated_at,
    'chunks', (select count(*) from public.knowledge_chunks k where k.source_id = s.id))
    order by s.title), '[]'::jsonb)
  from public.knowledge_sources s
  where s.tenant_id in (select m.tenant_id from public.tenant_members m
                        where m.user_id = p_user_id and m.role in ('admin', 'supervisor'))
$$;

-- How many of a tenant's passages hold each word (the '' row: how many passages in all), for
-- weighting words by rarity: "envío" says more about a question than "puedo". Recomputed for
-- the tenant whenever its sources change (ts_stat over its passages).
create table public.knowledge_terms (
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  lexeme text not null,
  documents integer not null,
  primary key (tenant_id, lexeme)
);
-- The typo lookup (lexemes starting with "medel") whatever the database's collation.
create index knowledge_terms_prefix_idx on public.knowledge_terms (tenant_id, lexeme text_pattern_ops);
comment on table public.knowledge_terms is
  'Document frequency of each indexed word per tenant (lexeme  = passage count): retrieval weights.';
alter table public.knowledge_terms enable row level security;
revoke all on public.knowledge_terms from anon, authenticated, service_role;

create or replace function private.refresh_knowledge_terms(p_tenant_id uuid) returns void
language plpgsql set search_path = '' as $$
begin
  delete from public.knowledge_terms where tenant_id = p_tenant_id;
  insert into public.knowledge_terms (tenant_id, lexeme, documents)
  select p_tenant_id, s.word, s.ndoc from pg_catalog.ts_stat(format(
    'select search from public.knowledge_chunks where tenant_id = %L', p_tenant_id)) s
  union all
  select p_tenant_id, '', count(*)::integer from public.knowledge_chunks where tenant_id = p_tenant_id;
end
$$;

-- The words of a customer's message, weighted by how rare they are among the tenant's
-- passages (BM25's idf). A word no passage holds but that shares its first five letters with
-- indexed words (a typo: "medelin") stands for those, at 80%; words of one or two letters
-- ("q", "a"), greetings and filler ("hola", "porfa") are left out. p_weight scales a whole
-- message (the previous one counts less).
create or replace function private.knowledge_terms_of(
  p_tenant_id uuid, p_config regconfig, p_text text, p_weight float8
) returns table (lexeme text, query tsquery, weight float8, idf float8)
language sql stable set search_path = '' as $$
  with total as (
    select greatest(documents, 1)::float8 as n from public.knowledge_terms
    where tenant_id = p_tenant_id and lexeme = ''
  ),
  words as (
    select distinct w as word
    from unnest(tsvector_to_array(to_tsvector(p_config, private.fold(p_text)))) as w
    where length(w) >= 3
      -- greetings and WhatsApp filler say nothing about what is asked
      and w <> all(tsvector_to_array(to_tsvector(p_config,
        'hola buenas buenos tardes dias noches porfa porfavor favor gracias plis xfa')))
  ),
  matched as (
    select w.word, coalesce(ex.lexemes, near.lexemes) as lexemes,
      coalesce(ex.df, near.df) as df, ex.lexemes is null as by_prefix
    from words w
    left join lateral (
      select array[t.lexeme] as lexemes, t.documents as df from public.knowledge_terms t
      where t.tenant_id = p_tenant_id and t.lexeme = w.word
    ) ex on true
    left join lateral (
      select array_agg(t.lexeme) as lexemes, min(t.documents) as df from (
        select t.lexeme, t.documents from public.knowledge_terms t
        where t.tenant_id = p_tenant_id and length(w.word) >= 6
          -- starts with the five letters (a range the pattern index serves)
          and t.lexeme ~>=~ left(w.word, 5) and t.lexeme ~<~ (left(w.word, 5) || chr(1114111))
        limit 8) t
      having count(*) > 0
    ) near on ex.lexemes is null
  )
  select m.word,
    case when m.lexemes is null then null
      else array_to_string(array(select quote_literal(l) from unnest(m.lexemes) l), ' | ')::tsquery
    end,
    p_weight * case when m.by_prefix then 0.8 else 1.0 end,
    -- a word no passage holds weighs as much as the rarest one: it is what the passages lack
    ln(1 + (total.n - coalesce(m.df, 1) + 0.5) / (coalesce(m.df, 1) + 0.5))
  from matched m, total
$$;

-- The passages for a conversation's turn: those of the advisor's scope that cover most of the
-- newest customer message's information (the one before adds a little, for follow-ups like
-- "¿y a Cali?"), covering at least KNOWLEDGE_MIN_COVERAGE of it, at most p_top_k.
create or replace function private.turn_knowledge(p_conversation_id uuid, p_top_k integer)
returns jsonb
language plpgsql stable set search_path = '' set jit = off as $$
declare
  v_tenant uuid;
  v_advisor uuid;
  v_config regconfig;
  v_texts text[];
  v_result jsonb;
  v_pass integer;
begin
  if coalesce(p_top_k, 0) <= 0 then
    return '[]'::jsonb;
  end if;
  select c.tenant_id, c.advisor_id, private.text_config(coalesce(a.settings ->> 'language', 'es'))
  into v_tenant, v_advisor, v_config
  from public.conversations c join public.advisors a on a.id = c.advisor_id
  where c.id = p_conversation_id;
  if not exists (select 1 from public.knowledge_terms t where t.tenant_id = v_tenant) then
    return '[]'::jsonb;
  end if;
  select array_agg(t order by created_at desc) into v_texts from (
    select coalesce(m.transcript, m.body, '') as t, m.created_at from public.messages m
    where m.conversation_id = p_conversation_id and m.direction = 'inbound'
    order by m.created_at desc limit 2) recent;

  -- First the passages holding both of the two rarest words (few, so few to score); when that
  -- gives none, those holding any of the three rarest.
  for v_pass in 1..2 loop
  with terms as (
    select distinct on (t.lexeme) t.*, t.weight >= 0.8 as newest from (
      select * from private.knowledge_terms_of(v_tenant, v_config, v_texts[1], 1.0)
      union all
      select * from private.knowledge_terms_of(v_tenant, v_config, v_texts[2], 0.3)
      where v_texts[2] is not null
    ) t
    order by t.lexeme, t.weight desc
  ),
  information as (select sum(idf) as total from terms where newest),
  -- Candidates come from the rarest words the passages hold: a passage without them cannot
  -- cover enough of the message, and a common word ("precio" in a catalogue) still adds to
  -- the score without making every passage a candidate.
  wanted as (
    select array_to_string(array_agg('(' || query::text || ')'),
      case v_pass when 1 then ' & ' else ' | ' end)::tsquery as query
    from (select query from terms where query is not null
          order by idf * weight desc limit case v_pass when 1 then 2 else 3 end) t
  ),
  scored as (
    select k.id, k.source_id, k.heading, k.content,
      (select sum(t.weight * t.idf) from terms t where t.query is not null and k.search @@ t.query)
        / nullif((select total from information), 0) as score
    from public.knowledge_chunks k, wanted
    where k.tenant_id = v_tenant and (k.advisor_id is null or k.advisor_id = v_advisor)
      and k.search @@ wanted.query
  )
  select coalesce(jsonb_agg(jsonb_build_object('chunk_id', x.id, 'title', x.title,
    'heading', x.heading, 'content', x.content, 'score', round(x.score::numeric, 4))
    order by x.score desc), '[]'::jsonb)
  into v_result
  from (
    select sc.*, s.title from scored sc join public.knowledge_sources s on s.id = sc.source_id
    where sc.score >= 0.35
    order by sc.score desc
    limit p_top_k
  ) x;
  exit when jsonb_array_length(v_result) > 0;
  end loop;
  return v_result;
end
$$;

-- AI runs are written from their JSON by the row type, so a new column (knowledge: which
-- passages the model was given) needs no new commit_reply.
alter table public.ai_runs add column if not exists knowledge jsonb;
comment on column public.ai_runs.knowledge is
  'The passages the model was given: [{chunk_id, title, score}].';

create or replace function private.record_ai_run(
  c public.conversations, p_inbound_message_id uuid, p_ai_run jsonb
) returns void
language sql set search_path = '' as $$
  insert into public.ai_runs
  select (jsonb_populate_record(null::public.ai_runs, p_ai_run || jsonb_build_object(
    'id', gen_random_uuid(), 'tenant_id', c.tenant_id, 'advisor_id', c.advisor_id,
    'conversation_id', c.id, 'inbound_message_id', p_inbound_message_id,
    'created_at', now()))).*
$$;

-- commit_reply: every reply gets a reply_id (its parts go out in order or not at all), the
-- conversation's last message time and preview follow media-only replies too, the handoff's
-- summary and time are stored, and the AI run is written by its row type.
create or replace function public.commit_reply(
  p_conversation_id uuid,
  p_seen uuid[],
  p_messages jsonb,
  p_ai_run jsonb default null,
  p_handoff jsonb default null,
  p_require_ai boolean default true
) returns jsonb
language plpgsql security definer set search_path = '' as $$
declare
  v_conv public.conversations;
  v_active boolean;
  v_newest uuid := p_seen[array_upper(p_seen, 1)];
  v_reply uuid := gen_random_uuid();
  v_ids jsonb;
  v_count integer;
  v_last text;
begin
  select c.* into v_conv from public.conversations c where c.id = p_conversation_id for update;
  if not found then
    raise exception 'unknown conversation %', p_conversation_id using errcode = 'P0002';
  end if;
  select a.is_active into v_active from public.advisors a where a.id = v_conv.advisor_id;

  if p_require_ai and not private.ai_may_answer(v_conv, v_active) then
    return jsonb_build_object('committed', false, 'reason', 'ai_not_allowed');
  end if;
  if p_require_ai and v_newest is not null and exists (
    select 1 from public.messages m where m.id = v_newest and m.handled_at is not null
  ) then
    return jsonb_build_object('committed', false, 'reason', 'already_answered');
  end if;

  with inserted as (
    insert into public.messages (tenant_id, advisor_id, conversation_id, direction, author, body,
      media, status, reply_id)
    select v_conv.tenant_id, v_conv.advisor_id, v_conv.id, 'outbound', m.author, m.body,
      coalesce(m.media, '[]'::jsonb), 'queued', v_reply
    from jsonb_array_elements(coalesce(p_messages, '[]'::jsonb)) with ordinality as e(value, n)
    cross join lateral jsonb_to_record(e.value) as m(author text, body text, media jsonb)
    order by e.n
    returning id, body, media, created_at
  )
  select coalesce(jsonb_agg(id order by created_at), '[]'::jsonb), count(*),
    (array_agg(coalesce(nullif(body, ''),
       case when media @> '[{"type": "template"}]' then '[template]' else '[media]' end)
     order by created_at desc))[1]
  into v_ids, v_count, v_last from inserted;

  if p_ai_run is not null then
    perform private.record_ai_run(v_conv, v_newest, p_ai_run);
  end if;

  update public.messages set handled_at = now()
  where id = any(p_seen) and direction = 'inbound' and handled_at is null;

  update public.conversations c set
    last_message_at = case when v_count = 0 then c.last_message_at else now() end,
    last_message_preview = coalesce(left(v_last, 120), c.last_message_preview),
    ai_attention = case when p_handoff ? 'hours' then false else c.ai_attention end,
    human_override_until = case when p_handoff ? 'hours'
      then now() + make_interval(secs => (p_handoff ->> 'hours')::float8 * 3600)
      else c.human_override_until end,
    handoff_reason = coalesce(p_handoff ->> 'reason', c.handoff_reason),
    handoff_summary = case when p_handoff ? 'summary' then left(p_handoff ->> 'summary', 2000)
                           else c.handoff_summary end,
    handoff_at = case when p_handoff ? 'summary' then now() else c.handoff_at end,
    needs_human = case when p_handoff ? 'needs_human' then (p_handoff ->> 'needs_human')::boolean
                       else c.needs_human or p_handoff is not null end
  where c.id = v_conv.id;

  return jsonb_build_object('committed', true, 'message_ids', v_ids);
end
$$;

-- The three functions that hand a turn to the model return, beside the growing history
-- window (private.history), the turn's passages (p_knowledge_top_k, 0: none).
drop function public.ingest_inbound(uuid, text, text, text, text, jsonb, text, boolean, integer);
create function public.ingest_inbound(
  p_advisor_id uuid,
  p_customer_phone text,
  p_customer_name text,
  p_provider_sid text,
  p_body text,
  p_media jsonb default '[]'::jsonb,
  p_opt text default null,             -- 'out' (STOP) or 'in' (START)
  p_ai_permitted boolean default true, -- false when a rate limit withholds the AI
  p_history_limit integer default 20,
  p_knowledge_top_k integer default 0
) returns jsonb
language plpgsql security definer set search_path = '' as $$
declare
  v_tenant uuid;
  v_active boolean;
  v_conv public.conversations;
  v_message_id uuid;
  v_created timestamptz;
  v_is_new boolean := true;
  v_opt_changed boolean := false;
  v_ai_allowed boolean;
begin
  if p_opt is not null and p_opt not in ('out', 'in') then
    raise exception 'p_opt must be out, in or null' using errcode = '22023';
  end if;
  select tenant_id, is_active into v_tenant, v_active from public.advisors where id = p_advisor_id;
  if v_tenant is null then
    raise exception 'unknown advisor %', p_advisor_id using errcode = 'P0002';
  end if;

  select * into v_conv from public.conversations
  where advisor_id = p_advisor_id and customer_phone = p_customer_phone;
  if not found then
    insert into public.conversations (tenant_id, advisor_id, customer_phone, customer_name,
      audio_available)
    select v_tenant, p_advisor_id, p_customer_phone, p_customer_name,
      coalesce((a.settings ->> 'audio_available')::boolean, false)
    from public.advisors a where a.id = p_advisor_id
    on conflict (advisor_id, customer_phone) do nothing
    returning * into v_conv;
    if not found then  -- a concurrent first message created it
      select * into v_conv from public.conversations
      where advisor_id = p_advisor_id and customer_phone = p_customer_phone;
    end if;
  end if;

  insert into public.messages (tenant_id, advisor_id, conversation_id, direction, author, body,
    media, provider_sid, status)
  values (v_tenant, p_advisor_id, v_conv.id, 'inbound', 'customer', p_body,
    coalesce(p_media, '[]'::jsonb), p_provider_sid, 'received')
  on conflict (provider_sid) do nothing
  returning id, created_at into v_message_id, v_created;

  if v_message_id is null then
    v_is_new := false;
    select id, created_at into v_message_id, v_created
    from public.messages where provider_sid = p_provider_sid;
    select * into v_conv from public.conversations where id = v_conv.id;
  else
    v_opt_changed := (p_opt = 'out' and v_conv.opted_out_at is null)
                  or (p_opt = 'in' and v_conv.opted_out_at is not null);
    update public.conversations c set
      customer_name = coalesce(p_customer_name, c.customer_name),
      last_inbound_at = now(),
      last_message_at = now(),
      last_message_preview = left(coalesce(nullif(p_body, ''), '[media]'), 120),
      unread_count = c.unread_count + 1,
      status = 'open',
      opted_out_at = case p_opt when 'out' then coalesce(c.opted_out_at, now())
                                when 'in' then null else c.opted_out_at end
    where c.id = v_conv.id
    returning * into v_conv;
  end if;

  v_ai_allowed := v_is_new and p_ai_permitted and p_opt is null
    and private.ai_may_answer(v_conv, v_active);

  -- A message the AI will not answer is handled now, so the recovery sweep leaves it alone.
  if v_is_new and not v_ai_allowed then
    update public.messages set handled_at = now() where id = v_message_id;
  end if;

  return jsonb_build_object(
    'message_id', v_message_id,
    'created_us', (extract(epoch from v_created) * 1000000)::bigint,
    'is_new', v_is_new,
    'conversation_id', v_conv.id,
    'tenant_id', v_tenant,
    'ai_attention', v_conv.ai_attention,
    'human_override_until', v_conv.human_override_until,
    'audio_available', v_conv.audio_available,
    'opted_out_at', v_conv.opted_out_at,
    'opt_changed', v_opt_changed,
    'ai_allowed', v_ai_allowed,
    'history', private.history(v_conv.id, p_history_limit),
    'knowledge', case when v_ai_allowed
      then private.turn_knowledge(v_conv.id, p_knowledge_top_k) else '[]'::jsonb end);
end
$$;

drop function public.pending_turn(uuid, integer);
create function public.pending_turn(
  p_conversation_id uuid, p_history_limit integer default 20, p_knowledge_top_k integer default 0
) returns jsonb
language plpgsql stable security definer set search_path = '' as $$
declare
  v_unhandled jsonb;
  v_result jsonb;
begin
  select jsonb_agg(m.id order by m.created_at) into v_unhandled from public.messages m
  where m.conversation_id = p_conversation_id and m.direction = 'inbound' and m.handled_at is null
    and (m.lease_until is null or m.lease_until < now());
  if v_unhandled is null then
    return jsonb_build_object('unhandled', '[]'::jsonb);
  end if;
  select jsonb_build_object(
    'unhandled', v_unhandled,
    'ai_allowed', private.ai_may_answer(c, a.is_active),
    'audio_available', c.audio_available,
    'history', private.history(c.id, p_history_limit),
    'knowledge', private.turn_knowledge(c.id, p_knowledge_top_k))
  into v_result
  from public.conversations c
  join public.advisors a on a.id = c.advisor_id
  where c.id = p_conversation_id;
  return v_result;
end
$$;

-- Recovery claims one unanswered turn at a time. claim_unanswered_turns leased up to ten
-- messages per turn for a whole batch of turns, each of which may take a full request budget
-- to answer: leases lapsed while the batch was still being answered, and an overlapping run
-- answered the same turn again. The sweep now claims a turn just before answering it, for one
-- lease, and leases exactly that conversation's messages; whether the AI may answer is decided
-- by private.ai_may_answer, as everywhere else.
drop function public.claim_unanswered_turns(integer, interval, interval, interval, integer);
create function public.claim_unanswered_turn(
  p_min_age interval, p_max_age interval, p_lease interval, p_history_limit integer default 20,
  p_knowledge_top_k integer default 0
) returns jsonb
language plpgsql security definer set search_path = '' as $$
declare
  v_conversation uuid;
  v_newest uuid;
  v_result jsonb;
begin
  for v_conversation in
    select m.conversation_id from public.messages m
    where m.direction = 'inbound' and m.handled_at is null
      and m.created_at < now() - p_min_age and m.created_at > now() - p_max_age
      and (m.lease_until is null or m.lease_until < now())
    order by m.created_at
    limit 50
  loop
    -- One run per conversation: another run holding it is answering it.
    perform 1 from public.conversations c where c.id = v_conversation for update skip locked;
    continue when not found;
    with leased as (
      update public.messages m set lease_until = now() + p_lease
      where m.conversation_id = v_conversation and m.direction = 'inbound'
        and m.handled_at is null and m.created_at > now() - p_max_age
        and (m.lease_until is null or m.lease_until < now())
      returning m.id, m.created_at
    )
    select id into v_newest from leased order by created_at desc limit 1;
    continue when v_newest is null;

    select jsonb_build_object(
      'conversation_id', c.id,
      'message_id', v_newest,
      'customer_phone', c.customer_phone,
      'twilio_phone_number', a.twilio_phone_number,
      'audio_available', c.audio_available,
      'ai_allowed', private.ai_may_answer(c, a.is_active),
      'history', private.history(c.id, p_history_limit),
      'knowledge', private.turn_knowledge(c.id, p_knowledge_top_k))
    into v_result
    from public.conversations c
    join public.advisors a on a.id = c.advisor_id
    where c.id = v_conversation;
    return v_result;
  end loop;
  return null;
end
$$;

revoke all on function private.fold(text), private.text_config(text),
  private.knowledge_tenant(uuid, uuid, uuid), private.refresh_knowledge_terms(uuid),
  private.knowledge_terms_of(uuid, regconfig, text, float8), private.turn_knowledge(uuid, integer),
  private.record_ai_run(public.conversations, uuid, jsonb) from public, anon, authenticated;

do $$
declare
  f text;
begin
  foreach f in array array[
    'public.replace_knowledge_source(uuid, uuid, uuid, text, text, text, jsonb)',
    'public.delete_knowledge_source(uuid, uuid)',
    'public.list_knowledge_sources(uuid)',
    'public.ingest_inbound(uuid, text, text, text, text, jsonb, text, boolean, integer, integer)',
    'public.pending_turn(uuid, integer, integer)',
    'public.claim_unanswered_turn(interval, interval, interval, integer, integer)'
  ] loop
    execute format('revoke all on function %s from public, anon, authenticated', f);
    execute format('grant execute on function %s to assistant_functions, service_role', f);
  end loop;
end
$$;
