// Live updates: one private Realtime channel per advisor the user follows (the database
// broadcasts every message and conversation change there). The connection is watched; after
// any drop, `onOnline(true)` runs again so the page refetches what changed while it was away.
import { supabase } from "./api.js";

const WATCH_MS = 500;

export function follow(advisorIds, accessToken, { onChange, onOnline }) {
  supabase.realtime.setAuth(accessToken);
  const channels = advisorIds.map((id) =>
    supabase
      .channel(`advisor:${id}`, { config: { private: true } })
      .on("broadcast", { event: "*" }, ({ payload }) => onChange(payload))
      .subscribe(),
  );
  let online = false;
  const watch = setInterval(() => {
    const now = supabase.realtime.isConnected() && channels.every((c) => c.state === "joined");
    if (now !== online) {
      online = now;
      onOnline(now);
    }
  }, WATCH_MS);
  return () => {
    clearInterval(watch);
    for (const channel of channels) supabase.removeChannel(channel);
  };
}
