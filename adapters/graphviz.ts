// Graphviz compiled to WebAssembly (@hpcc-js/wasm-graphviz): renders DOT to SVG in-process,
// offline, with no system Graphviz. Layout and text metrics come from the WASM build itself,
// so the same DOT gives the same SVG bytes on every machine (the committed pictures rely on it).
// The only module that loads the package; loaded on demand so other commands do not pay for it.

/** Renders DOT text to an SVG document. */
export type DotToSvg = (dot: string) => string;

export async function loadDotRenderer(): Promise<DotToSvg> {
  const { Graphviz } = await import('@hpcc-js/wasm-graphviz');
  const graphviz = await Graphviz.load();
  return (dot) => graphviz.dot(dot, 'svg');
}
