// Chart colours come from CSS variables so the light and dark themes each pick their own.

export const PALETTE_SIZE = 8;

/** A `#rrggbb` colour at opacity `alpha`; other colour forms are returned as they are. */
export function withAlpha(color, alpha) {
  const m = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(color.trim());
  if (!m) return color;
  const [r, g, b] = m.slice(1).map((h) => parseInt(h, 16));
  return `rgba(${r}, ${g}, ${b}, ${alpha})`;
}

/** The palette slot of a run: fixed by its id, so a run keeps its colour on every page. */
export function paletteIndex(runId) {
  return ((runId % PALETTE_SIZE) + PALETTE_SIZE) % PALETTE_SIZE;
}

/** The current value of a CSS custom property on the document. */
export function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}
