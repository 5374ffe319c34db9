import { useEffect, useState } from "preact/hooks";

/** The page named by the URL's hash (`#/usage` -> "usage"); the hash never carries secrets. */
export function useHashRoute(): string {
  const read = () => window.location.hash.replace(/^#\/?/, "");
  const [route, setRoute] = useState(read);
  useEffect(() => {
    const changed = () => setRoute(read());
    window.addEventListener("hashchange", changed);
    return () => window.removeEventListener("hashchange", changed);
  }, []);
  return route;
}
