/** Sizes and payloads shared by the load tests. */
export const KiB = 1024;
export const MiB = 1024 * KiB;

/** A payload of exactly `size` characters that starts with `${i}:`. */
export function payload(i: number, size = KiB): string {
  const head = `${i}:`;
  return head + 'x'.repeat(size - head.length);
}
