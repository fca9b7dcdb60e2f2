module github.com/aoai-failover/failover

go 1.25

require (
	github.com/joho/godotenv v1.5.1
	github.com/sashabaranov/go-openai v1.43.0
	github.com/stretchr/testify v1.12.1
	go.uber.org/goleak v1.3.0
)

require go.yaml.in/yaml/v3 v3.0.5 // indirect
