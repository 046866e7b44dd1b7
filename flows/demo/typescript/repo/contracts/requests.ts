// The request bodies contracts/auth.ts names but does not define (the pattern's example leaves
// them out). Like it, a script: its types are global to the project.

interface LoginRequest { email: string; password: string }
interface RegisterRequest { email: string; password: string }
