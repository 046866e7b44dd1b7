// contracts/auth.ts (committed before spawning)

// Backend provides:
interface AuthAPI {
  'POST /login': { body: LoginRequest; response: AuthResponse }
  'POST /register': { body: RegisterRequest; response: AuthResponse }
  'GET /me': { response: User }
}

// Frontend expects:
interface AuthContext {
  user: User | null
  login: (email: string, password: string) => Promise<void>
  logout: () => void
}

// Shared types:
interface User { id: string; email: string }
interface AuthResponse { token: string; user: User }
