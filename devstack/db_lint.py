"""Database lint in the spirit of Supabase's linter (splinter): rules every table and function
of ours must follow, checked in the database itself, so a migration that forgets one fails.

Rules (each finding names the object and the rule):
- rls_disabled: a table in public without row-level security.
- no_grant_decision: a table in public granted to no API role and not declared service-only.
- dangerous_privilege: an API role holds TRIGGER, TRUNCATE, REFERENCES or MAINTAIN on a table
  in public (they act outside row-level security).
- function_exposed: a function in public or private that anon, authenticated or PUBLIC may
  execute, other than the visibility helpers the policies call and the console's
  security-invoker reads (and the pure helper they share with triggers).
- security_definer_exposed: a security-definer function in public (the schema the Data API
  serves) that anon, authenticated or PUBLIC may execute.
- mutable_search_path: a function in public or private without a fixed search_path.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import tuple_row

API_ROLES = ("anon", "authenticated", "service_role")
# Written by the functions only; no API role at all, on purpose.
SERVICE_ONLY_TABLES = frozenset(
    {
        "unrouted_messages",
        "early_status_callbacks",
        "send_requests",
        "knowledge_terms",
        "erasure_requests",
    }
)
# Called by RLS policies as the dashboard user; they only ever answer about that user.
POLICY_HELPERS = frozenset(
    {
        "private.visible_advisor_ids()",
        "private.staff_tenant_ids()",
        "private.member_tenant_ids()",
        "private.admin_tenant_ids()",
        "private.may_read_knowledge(uuid,uuid)",
    }
)

# Called by the console through the Data API (regprocedure omits the schema on the search
# path); security invoker, so RLS decides what they read.
CONSOLE_FUNCTIONS = frozenset(
    {
        "advisor_metrics(timestamp with time zone,timestamp with time zone)",
        # Pure arithmetic advisor_metrics shares with the rollup triggers.
        "private.activity_hour(timestamp with time zone)",
    }
)

_TABLES = """
select c.relname as name, c.relrowsecurity as rls,
  exists (select 1 from information_schema.role_table_grants g
          where g.table_schema = 'public' and g.table_name = c.relname
            and g.grantee = any(%(roles)s))
  or exists (select 1 from information_schema.role_column_grants g
             where g.table_schema = 'public' and g.table_name = c.relname
               and g.grantee = any(%(roles)s)) as granted,
  array(select distinct g.grantee || ' ' || g.privilege_type
        from information_schema.role_table_grants g
        where g.table_schema = 'public' and g.table_name = c.relname
          and g.grantee = any(%(roles)s)
          and g.privilege_type in ('TRIGGER', 'TRUNCATE', 'REFERENCES', 'MAINTAIN')
        order by 1) as dangerous
from pg_class c
where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'p')
order by c.relname
"""

_FUNCTIONS = """
select p.oid::regprocedure::text as name, n.nspname as schema, p.prosecdef as definer,
  exists (select 1 from unnest(coalesce(p.proconfig, '{}')) cfg
          where cfg like 'search_path=%%') as fixed_path,
  has_function_privilege('anon', p.oid, 'execute')
    or has_function_privilege('authenticated', p.oid, 'execute') as exposed
from pg_proc p
join pg_namespace n on n.oid = p.pronamespace
where n.nspname in ('public', 'private')
  and not exists (select 1 from pg_depend d where d.objid = p.oid and d.deptype = 'e')
order by 1
"""


def lint(conn: psycopg.Connection[Any]) -> list[str]:
    """Every rule broken in this database, as 'rule: object' lines (empty when clean)."""
    findings: list[str] = []
    cur = conn.cursor(row_factory=tuple_row)
    for name, rls, granted, dangerous in cur.execute(_TABLES, {"roles": list(API_ROLES)}):
        if not rls:
            findings.append(f"rls_disabled: public.{name}")
        if not granted and name not in SERVICE_ONLY_TABLES:
            findings.append(f"no_grant_decision: public.{name}")
        findings += [f"dangerous_privilege: public.{name} {grant}" for grant in dangerous]
    for name, schema, definer, fixed_path, exposed in cur.execute(_FUNCTIONS):
        if not fixed_path:
            findings.append(f"mutable_search_path: {name}")
        if exposed and name not in POLICY_HELPERS | CONSOLE_FUNCTIONS:
            findings.append(f"function_exposed: {name}")
        if exposed and definer and schema == "public":
            findings.append(f"security_definer_exposed: {name}")
    return findings
