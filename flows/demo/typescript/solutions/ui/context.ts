// The session the UI reads: AuthContext over the API's handlers (the routes of AuthAPI).

export interface Api {
  'POST /login': (body: LoginRequest) => Promise<AuthResponse>
}

export class SessionContext {
  user: User | null = null
  private token: string | null = null

  constructor(private readonly api: Api) {}

  login = async (email: string, password: string): Promise<void> => {
    const res = await this.api['POST /login']({ email, password })
    this.user = res.user
    this.token = res.token
  }

  logout = (): void => {
    this.user = null
    this.token = null
  }
}
