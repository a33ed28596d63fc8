// roomcast client SDK (ES module).
export const version = "0";
