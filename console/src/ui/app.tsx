import type { ComponentChildren } from "preact";
import { useState } from "preact/hooks";
import { AdaptersPage } from "./pages/adapters-page.tsx";
import { BackendsPage } from "./pages/backends-page.tsx";
import { KeysPage } from "./pages/keys-page.tsx";
import { PlaygroundPage } from "./pages/playground-page.tsx";
import { TenantsPage } from "./pages/tenants-page.tsx";
import { UsagePage } from "./pages/usage-page.tsx";
import { useHashRoute } from "./route.ts";
import { can, loadSession, type Session, saveSession } from "./session.ts";
import { SignIn } from "./sign-in.tsx";

type Page = { route: string; title: string; render: (session: Session) => ComponentChildren };

const tenantPages: Page[] = [
  { route: "adapters", title: "Adapters", render: (s) => <AdaptersPage session={s} /> },
  { route: "usage", title: "Usage", render: (s) => <UsagePage session={s} /> },
  { route: "playground", title: "Playground", render: (s) => <PlaygroundPage session={s} /> },
];

/** Only a key with the `admin` scope may manage its tenant's keys (/v1/keys). */
const tenantAdminPages: Page[] = [
  ...tenantPages,
  { route: "keys", title: "API keys", render: (s) => <KeysPage session={s} /> },
];

const adminPages: Page[] = [
  { route: "tenants", title: "Tenants", render: (s) => <TenantsPage session={s} /> },
  { route: "keys", title: "API keys", render: (s) => <KeysPage session={s} /> },
  { route: "backends", title: "Backends", render: (s) => <BackendsPage session={s} /> },
  { route: "usage", title: "Usage", render: (s) => <UsagePage session={s} /> },
];

export function App() {
  const [session, setSession] = useState<Session | null>(loadSession);
  const route = useHashRoute();

  function change(next: Session | null) {
    saveSession(next);
    setSession(next);
  }

  if (session === null) return <SignIn onSignedIn={change} />;
  const pages =
    session.kind === "admin" ? adminPages : can(session, "admin") ? tenantAdminPages : tenantPages;
  const page = pages.find((p) => p.route === route) ?? (pages[0] as Page);
  return (
    <div class="layout">
      <a class="skip-link" href="#content">
        Skip to content
      </a>
      <aside class="sidebar">
        <h1>lorafleet</h1>
        {session.kind === "tenant" && (
          <p class="who" data-testid="who">
            {session.tenantName} · <code>{session.keyPrefix}…</code>
          </p>
        )}
        <p class="who">
          {session.kind === "admin"
            ? "Operator (admin token)"
            : `Tenant key · ${session.scopes.join(", ") || "no scopes"}`}
        </p>
        <nav aria-label="Console">
          <ul>
            {pages.map((p) => (
              <li key={p.route}>
                <a href={`#/${p.route}`} aria-current={p === page ? "page" : undefined}>
                  {p.title}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <button class="sign-out" type="button" onClick={() => change(null)}>
          Sign out
        </button>
      </aside>
      <main id="content" tabIndex={-1}>
        <h2>{page.title}</h2>
        {page.render(session)}
      </main>
    </div>
  );
}
