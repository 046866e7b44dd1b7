// The API of contracts/auth.ts: one handler per route. It needs a store; any object with these
// two methods will do (the data cluster's UserStore is one), so the API compiles on its own.

export interface Users {
  add(email: string, password: string): User
  check(email: string, password: string): User | null
}

export class AuthService {
  private current: User | null = null
  private issued = 0

  constructor(private readonly users: Users) {}

  async 'POST /register'(body: RegisterRequest): Promise<AuthResponse> {
    const user = this.users.add(body.email, body.password)
    return this.session(user)
  }

  async 'POST /login'(body: LoginRequest): Promise<AuthResponse> {
    const user = this.users.check(body.email, body.password)
    if (user === null) throw new Error('invalid email or password')
    return this.session(user)
  }

  async 'GET /me'(): Promise<User> {
    if (this.current === null) throw new Error('not logged in')
    return this.current
  }

  private session(user: User): AuthResponse {
    this.current = user
    this.issued += 1
    return { token: `token-${user.id}-${this.issued}`, user }
  }
}
