// Types only (for `tsc -p tsconfig.example.json`): app.js sets `req.user` to
// the signed-in user's name (requireUser, and the 404 handler).
declare global {
  namespace Express {
    interface Request {
      user?: string;
    }
  }
}

export {};
