// A user store in memory, passwords kept as salted hashes (FNV-1a: a demo, not for real secrets).

export interface StoredUser { user: User; salt: string; hash: string }

export function hashPassword(password: string, salt: string): string {
  let h = 0x811c9dc5
  for (const ch of salt + ':' + password) {
    h ^= ch.charCodeAt(0)
    h = Math.imul(h, 0x01000193) >>> 0
  }
  return h.toString(16)
}

export class UserStore {
  private byEmail = new Map<string, StoredUser>()

  add(email: string, password: string): User {
    if (this.byEmail.has(email)) throw new Error(`${email} is already registered`)
    const user: User = { id: String(this.byEmail.size + 1), email }
    const salt = `s${this.byEmail.size + 1}`
    this.byEmail.set(email, { user, salt, hash: hashPassword(password, salt) })
    return user
  }

  check(email: string, password: string): User | null {
    const found = this.byEmail.get(email)
    return found && found.hash === hashPassword(password, found.salt) ? found.user : null
  }
}
