-- Two hot-path functions keep one generic plan per session instead of planning anew per call.
--
-- PL/pgSQL prepares each statement once per session, but plans it for the parameters' values
-- ("custom plans") until a generic plan's estimate looks no costlier; for these statements it
-- never does, so they were planned on every call. Measured in the server (pg_stat_statements,
-- AI-answered messages): knowledge retrieval's query spent 0.77 ms per message planning against
-- 0.13 ms executing; commit_reply's handled_at update 0.11 ms planning against 0.1 ms
-- executing. The update reads messages by primary key whatever the values. Retrieval with one
-- plan costs 0.24 ms a call instead of 1.05 for a tenant with a few passages; for a tenant with
-- 10,000 its p95 is about 0.6 ms higher (README, "Database"), a trade kept because a business's
-- FAQ is tens to hundreds of passages. private.count_messages has kept one generic plan since
-- 20261123002000.
--
-- A SET clause belongs to the function's definition: a later `create or replace` of either
-- function must repeat it (tests/test_data_model.py checks it is there).
alter function private.turn_knowledge(uuid, integer) set plan_cache_mode = force_generic_plan;
alter function public.commit_reply(uuid, uuid[], jsonb, jsonb, jsonb, boolean)
  set plan_cache_mode = force_generic_plan;
